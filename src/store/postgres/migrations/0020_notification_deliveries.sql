-- Version 20 on PostgreSQL: notification deliveries (the SQLite store's 0017), one row per
-- attempt, per project.
CREATE TABLE {S}.notification_deliveries (
    project_id  TEXT NOT NULL,
    id          BIGSERIAL NOT NULL,
    delivery_id TEXT NOT NULL,
    event       TEXT NOT NULL,
    source      TEXT,
    receiver    TEXT NOT NULL,
    attempt     INTEGER NOT NULL CHECK (attempt >= 1),
    at          TIMESTAMPTZ NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'failed')),
    detail      TEXT,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX notification_deliveries_at ON {S}.notification_deliveries (project_id, at);

-- The roles of source requests (`requester`, `approver`), as the SQLite store's 0016 allows.
ALTER TABLE {S}.api_tokens DROP CONSTRAINT IF EXISTS api_tokens_role_check;
ALTER TABLE {S}.api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('viewer', 'operator', 'admin', 'requester', 'approver'));

-- Source requests (the SQLite store's 0016): a request's secrets are rows of `secrets` under
-- the plugin name `request:<id>`.
CREATE TABLE {S}.source_requests (
    project_id    TEXT NOT NULL,
    id            TEXT NOT NULL,
    name          TEXT NOT NULL,
    organisation  TEXT,
    requester     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'cancelled')),
    revision      TEXT NOT NULL,
    test          TEXT,
    reason        TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX source_requests_by_status ON {S}.source_requests (project_id, status, updated_at);

CREATE TABLE {S}.source_request_transitions (
    project_id  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT,
    PRIMARY KEY (project_id, request_id, seq),
    FOREIGN KEY (project_id, request_id) REFERENCES {S}.source_requests (project_id, id)
        ON DELETE CASCADE
);
