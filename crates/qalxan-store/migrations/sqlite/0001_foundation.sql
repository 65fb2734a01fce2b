-- Foundation schema (SQLite dialect). migrations/postgres/0001_foundation.sql is the same schema
-- in PostgreSQL's dialect; keep the two in step (a test compares their versions).
-- Timestamps are Unix milliseconds and flags 0/1, both BIGINT, so both backends store and compare
-- them alike (sqlx's Any driver cannot read SQLite booleans).

CREATE TABLE institutions (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL UNIQUE,
    sector        TEXT    NOT NULL DEFAULT '',
    contact_name  TEXT    NOT NULL DEFAULT '',
    contact_email TEXT    NOT NULL DEFAULT '',
    contact_phone TEXT    NOT NULL DEFAULT '',
    domains       TEXT    NOT NULL DEFAULT '[]',
    ip_ranges     TEXT    NOT NULL DEFAULT '[]',
    notes         TEXT    NOT NULL DEFAULT '',
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    username            TEXT    NOT NULL UNIQUE,
    display_name        TEXT    NOT NULL DEFAULT '',
    email               TEXT    NOT NULL DEFAULT '',
    password_hash       TEXT    NOT NULL,
    role                TEXT    NOT NULL,
    institution_id      BIGINT  REFERENCES institutions (id),
    disabled            BIGINT  NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    password_changed_at BIGINT  NOT NULL,
    CHECK ((role = 'institution') = (institution_id IS NOT NULL))
);

CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY,
    token_hash   TEXT    NOT NULL UNIQUE,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_seen_at BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    ip           TEXT    NOT NULL DEFAULT '',
    user_agent   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE api_tokens (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL,
    token_hash     TEXT    NOT NULL UNIQUE,
    prefix         TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    institution_id BIGINT  REFERENCES institutions (id),
    created_by     TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT,
    last_used_at   BIGINT,
    revoked_at     BIGINT
);

CREATE TABLE login_attempts (
    id       INTEGER PRIMARY KEY,
    at       BIGINT  NOT NULL,
    username TEXT    NOT NULL,
    ip       TEXT    NOT NULL,
    success  BIGINT  NOT NULL CHECK (success IN (0, 1))
);
CREATE INDEX login_attempts_user ON login_attempts (username, at);
CREATE INDEX login_attempts_ip ON login_attempts (ip, at);

-- Who changed what, when, with the object before and after. Append-only: the triggers below
-- refuse UPDATE and DELETE, so not even a bug in the product can rewrite history.
CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY,
    at             BIGINT  NOT NULL,
    actor          TEXT    NOT NULL,
    ip             TEXT    NOT NULL DEFAULT '',
    action         TEXT    NOT NULL,
    object_type    TEXT    NOT NULL,
    object_id      TEXT    NOT NULL,
    institution_id BIGINT,
    before_json    TEXT,
    after_json     TEXT
);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- What the parts of the platform report. Append-only like the audit log.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    received_at    BIGINT  NOT NULL,
    occurred_at    BIGINT  NOT NULL,
    kind           TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    institution_id BIGINT  REFERENCES institutions (id),
    severity       TEXT    NOT NULL,
    count          BIGINT  NOT NULL,
    value          BIGINT,
    attributes     TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX events_institution ON events (institution_id, id);
CREATE INDEX events_kind ON events (kind, id);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;

-- Sums of events per hour and per UTC day (width 3600000 or 86400000 ms), maintained in the same
-- transaction as the insert, so the dashboard reads a few thousand rows instead of scanning
-- millions of events. Each event adds to its institution's rows and to the rows for all
-- institutions (-1); 0 stands for "no institution" (NULLs would defeat the primary key).
CREATE TABLE event_rollups (
    institution_id BIGINT NOT NULL,
    width          BIGINT NOT NULL,
    bucket         BIGINT NOT NULL,
    kind           TEXT   NOT NULL,
    total          BIGINT NOT NULL,
    events         BIGINT NOT NULL,
    peak           BIGINT NOT NULL,
    PRIMARY KEY (institution_id, width, bucket, kind)
);
CREATE INDEX event_rollups_kind ON event_rollups (kind, width, bucket);
