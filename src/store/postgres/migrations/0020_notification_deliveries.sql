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
