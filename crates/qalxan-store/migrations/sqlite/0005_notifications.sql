-- Notifications (SQLite dialect; postgres/0005 is the same): webhooks, each person's e-mail
-- settings, and the ledger of notices already sent so an SLA breach is announced once.

CREATE TABLE webhooks (
    id           INTEGER PRIMARY KEY,
    url          TEXT    NOT NULL,
    -- The HMAC key the receiver checks signatures with; it must be stored to sign.
    secret       TEXT    NOT NULL,
    min_severity TEXT    NOT NULL,
    active       BIGINT  NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_by   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);

CREATE TABLE notification_settings (
    user_id         BIGINT PRIMARY KEY REFERENCES users (id),
    email_incidents BIGINT NOT NULL CHECK (email_incidents IN (0, 1)),
    email_sla       BIGINT NOT NULL CHECK (email_sla IN (0, 1)),
    min_severity    TEXT   NOT NULL
);

CREATE TABLE incident_notices (
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    kind        TEXT   NOT NULL,
    sent_at     BIGINT NOT NULL,
    PRIMARY KEY (incident_id, kind)
);
