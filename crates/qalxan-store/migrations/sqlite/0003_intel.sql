-- Threat intelligence (SQLite dialect; postgres/0003 is the same schema).
-- An indicator is one (kind, value) whatever the number of sources that reported it; its
-- sources and sightings are rows of their own. STIX objects are kept as received, per TAXII
-- collection, with every version (id, modified) they had.

CREATE TABLE indicators (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    tlp          TEXT    NOT NULL,
    tlp_rank     BIGINT  NOT NULL,
    confidence   BIGINT  NOT NULL,
    tags         TEXT    NOT NULL DEFAULT '[]',
    description  TEXT    NOT NULL DEFAULT '',
    first_seen   BIGINT,
    last_seen    BIGINT,
    valid_until  BIGINT,
    stix_id      TEXT,
    blocking     BIGINT  NOT NULL CHECK (blocking IN (0, 1)),
    warninglist  TEXT    NOT NULL DEFAULT '',
    sightings    BIGINT  NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    UNIQUE (kind, value)
);
-- An import finds the rows it touched by their updated_at; the blocklist's version is its MAX.
CREATE INDEX indicators_updated ON indicators (updated_at);

CREATE TABLE indicator_sources (
    indicator_id BIGINT  NOT NULL REFERENCES indicators (id) ON DELETE CASCADE,
    source       TEXT    NOT NULL,
    added_at     BIGINT  NOT NULL,
    PRIMARY KEY (indicator_id, source)
);
CREATE INDEX indicator_sources_source ON indicator_sources (source);

CREATE TABLE sightings (
    id             INTEGER PRIMARY KEY,
    indicator_id   BIGINT  NOT NULL REFERENCES indicators (id) ON DELETE CASCADE,
    sensor         TEXT    NOT NULL,
    institution_id BIGINT  REFERENCES institutions (id),
    count          BIGINT  NOT NULL,
    first_seen     BIGINT  NOT NULL,
    last_seen      BIGINT  NOT NULL,
    UNIQUE (indicator_id, sensor)
);

-- audience: 'cert' (CERT staff only), 'all' (every signed-in partner), 'institution' (one).
-- view_of: a collection that shows another's objects up to its own max TLP (read-only).
CREATE TABLE taxii_collections (
    id             TEXT    PRIMARY KEY,
    title          TEXT    NOT NULL,
    description    TEXT    NOT NULL DEFAULT '',
    audience       TEXT    NOT NULL CHECK (audience IN ('cert', 'all', 'institution')),
    institution_id BIGINT  REFERENCES institutions (id),
    max_tlp_rank   BIGINT  NOT NULL,
    view_of        TEXT    REFERENCES taxii_collections (id),
    created_at     BIGINT  NOT NULL
);

CREATE TABLE stix_objects (
    seq           INTEGER PRIMARY KEY,
    collection_id TEXT    NOT NULL REFERENCES taxii_collections (id),
    stix_id       TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    spec_version  TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    tlp_rank      BIGINT  NOT NULL,
    added_at      BIGINT  NOT NULL,
    body          TEXT    NOT NULL,
    UNIQUE (collection_id, stix_id, version)
);
CREATE INDEX stix_objects_added ON stix_objects (collection_id, added_at);

CREATE TABLE taxii_status (
    id            TEXT    PRIMARY KEY,
    collection_id TEXT    NOT NULL,
    total         BIGINT  NOT NULL,
    success       BIGINT  NOT NULL,
    failure       BIGINT  NOT NULL,
    details       TEXT    NOT NULL,
    created_by    TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);

INSERT INTO taxii_collections (id, title, description, audience, institution_id, max_tlp_rank, view_of, created_at)
VALUES ('365fed99-08fa-fdcd-a1b3-fb247eb41d01', 'CERT intelligence',
        'Everything the CERT knows, up to TLP:RED. CERT staff only.', 'cert', NULL, 4, NULL, 0);
INSERT INTO taxii_collections (id, title, description, audience, institution_id, max_tlp_rank, view_of, created_at)
VALUES ('91a7b528-80eb-42ed-a74d-c6fbd5a26116', 'Shared with partners',
        'The CERT''s intelligence marked TLP:CLEAR or TLP:GREEN.', 'all', NULL, 1,
        '365fed99-08fa-fdcd-a1b3-fb247eb41d01', 0);
