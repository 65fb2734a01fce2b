-- Documents analysed and disarmed by the sandbox (SQLite dialect; postgres/0002 is the same).
-- The disarmed copy is stored in the row so every server in a PostgreSQL deployment can
-- serve it; uploads are bounded by docs_max_bytes.

CREATE TABLE documents (
    id             INTEGER PRIMARY KEY,
    institution_id BIGINT  REFERENCES institutions (id),
    uploaded_by    TEXT    NOT NULL,
    filename       TEXT    NOT NULL,
    sha256         TEXT    NOT NULL,
    size           BIGINT  NOT NULL,
    file_type      TEXT    NOT NULL,
    verdict        TEXT    NOT NULL,
    score          BIGINT  NOT NULL,
    report         TEXT    NOT NULL,
    disarm_report  TEXT    NOT NULL DEFAULT '',
    disarm_error   TEXT    NOT NULL DEFAULT '',
    disarmed_name  TEXT    NOT NULL DEFAULT '',
    disarmed       BLOB,
    created_at     BIGINT  NOT NULL
);
CREATE INDEX documents_institution ON documents (institution_id, created_at);
CREATE INDEX documents_created ON documents (created_at);
CREATE INDEX documents_sha256 ON documents (sha256);
