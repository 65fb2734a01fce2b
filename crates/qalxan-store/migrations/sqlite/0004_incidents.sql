-- Incident response (SQLite dialect; postgres/0004 is the same): alerts raised by every part
-- and aggregated by key, incidents with their team, tasks, work log, observables, victims and
-- evidence. Evidence content is stored once per SHA-256 (content-addressed), in the database
-- so every server of a PostgreSQL deployment can serve it.

CREATE TABLE incidents (
    id            INTEGER PRIMARY KEY,
    title         TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    category      TEXT    NOT NULL,
    severity      TEXT    NOT NULL,
    impact        TEXT    NOT NULL,
    tlp           TEXT    NOT NULL,
    pap           TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    status_reason TEXT    NOT NULL DEFAULT '',
    created_by    TEXT    NOT NULL,
    opened_at     BIGINT  NOT NULL,
    triaged_at    BIGINT,
    contained_at  BIGINT,
    closed_at     BIGINT,
    updated_at    BIGINT  NOT NULL
);
CREATE INDEX incidents_opened ON incidents (opened_at);
CREATE INDEX incidents_status ON incidents (status, id);

CREATE TABLE incident_institutions (
    incident_id    BIGINT NOT NULL REFERENCES incidents (id),
    institution_id BIGINT NOT NULL REFERENCES institutions (id),
    PRIMARY KEY (incident_id, institution_id)
);
CREATE INDEX incident_institutions_by_institution ON incident_institutions (institution_id, incident_id);

CREATE TABLE incident_members (
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    user_id     BIGINT NOT NULL REFERENCES users (id),
    role        TEXT   NOT NULL CHECK (role IN ('lead', 'member')),
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (incident_id, user_id)
);

CREATE TABLE incident_tasks (
    id            INTEGER PRIMARY KEY,
    incident_id   BIGINT  NOT NULL REFERENCES incidents (id),
    title         TEXT    NOT NULL,
    owner_user_id BIGINT  REFERENCES users (id),
    due_at        BIGINT,
    status        TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
CREATE INDEX incident_tasks_incident ON incident_tasks (incident_id);

-- The timeline: comments and every change, in order. Append-only like the audit log.
CREATE TABLE incident_log (
    id          INTEGER PRIMARY KEY,
    incident_id BIGINT  NOT NULL REFERENCES incidents (id),
    at          BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    text        TEXT    NOT NULL
);
CREATE INDEX incident_log_incident ON incident_log (incident_id, id);
CREATE TRIGGER incident_log_no_update BEFORE UPDATE ON incident_log
BEGIN SELECT RAISE(ABORT, 'incident_log is append-only'); END;
CREATE TRIGGER incident_log_no_delete BEFORE DELETE ON incident_log
BEGIN SELECT RAISE(ABORT, 'incident_log is append-only'); END;

CREATE TABLE incident_observables (
    id           INTEGER PRIMARY KEY,
    incident_id  BIGINT  NOT NULL REFERENCES incidents (id),
    kind         TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    indicator_id BIGINT  REFERENCES indicators (id) ON DELETE SET NULL,
    added_at     BIGINT  NOT NULL,
    UNIQUE (incident_id, kind, value)
);
CREATE INDEX incident_observables_value ON incident_observables (kind, value);
CREATE INDEX incident_observables_indicator ON incident_observables (indicator_id);

CREATE TABLE incident_victims (
    id             INTEGER PRIMARY KEY,
    incident_id    BIGINT  NOT NULL REFERENCES incidents (id),
    kind           TEXT    NOT NULL,
    institution_id BIGINT  REFERENCES institutions (id),
    role           TEXT    NOT NULL DEFAULT '',
    count          BIGINT  NOT NULL CHECK (count > 0),
    note           TEXT    NOT NULL DEFAULT '',
    recorded_at    BIGINT  NOT NULL
);
CREATE INDEX incident_victims_incident ON incident_victims (incident_id);
CREATE INDEX incident_victims_recorded ON incident_victims (recorded_at);

CREATE TABLE evidence_blobs (
    sha256  TEXT   PRIMARY KEY,
    size    BIGINT NOT NULL,
    content BLOB   NOT NULL
);

CREATE TABLE incident_evidence (
    id          INTEGER PRIMARY KEY,
    incident_id BIGINT  NOT NULL REFERENCES incidents (id),
    sha256      TEXT    NOT NULL REFERENCES evidence_blobs (sha256),
    name        TEXT    NOT NULL,
    size        BIGINT  NOT NULL,
    scan_result TEXT    NOT NULL DEFAULT '',
    uploaded_by TEXT    NOT NULL,
    uploaded_at BIGINT  NOT NULL
);
CREATE INDEX incident_evidence_incident ON incident_evidence (incident_id);

CREATE TABLE alerts (
    id             INTEGER PRIMARY KEY,
    key            TEXT    NOT NULL,
    rule           TEXT    NOT NULL,
    title          TEXT    NOT NULL,
    severity       TEXT    NOT NULL,
    institution_id BIGINT  REFERENCES institutions (id),
    observables    TEXT    NOT NULL DEFAULT '[]',
    sources        TEXT    NOT NULL DEFAULT '[]',
    count          BIGINT  NOT NULL,
    status         TEXT    NOT NULL,
    status_reason  TEXT    NOT NULL DEFAULT '',
    merged_into    BIGINT  REFERENCES alerts (id),
    incident_id    BIGINT  REFERENCES incidents (id),
    first_seen     BIGINT  NOT NULL,
    last_seen      BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);
-- Aggregation looks up the live alert of a key; only open and acknowledged ones are live.
CREATE INDEX alerts_live_key ON alerts (key, last_seen) WHERE status IN ('open', 'acknowledged');
CREATE INDEX alerts_institution ON alerts (institution_id, id);
CREATE INDEX alerts_status ON alerts (status, id);
CREATE INDEX alerts_incident ON alerts (incident_id);
CREATE INDEX alerts_first_seen ON alerts (first_seen);

-- Alerts per institution (0: none) and status, kept in the same transactions as the alerts so
-- the monitor's counters never count a million rows.
CREATE TABLE alert_counts (
    institution_id BIGINT NOT NULL,
    status         TEXT   NOT NULL,
    n              BIGINT NOT NULL,
    PRIMARY KEY (institution_id, status)
);
