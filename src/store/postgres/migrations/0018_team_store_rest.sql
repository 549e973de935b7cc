-- Version 18 on PostgreSQL: the rest of the system store in team mode (the SQLite store's
-- 0002, 0003, 0007, 0013, 0014 and 0015 for several projects in one schema), and the tail of
-- each run's log so any host can show it. Every table starts with `project_id`.

-- Milliseconds since the epoch to a time (the twin of `epoch_ms`).
CREATE FUNCTION {S}.from_ms(ms BIGINT) RETURNS TIMESTAMPTZ
    LANGUAGE sql IMMUTABLE AS 'SELECT TIMESTAMPTZ ''epoch'' + ms * INTERVAL ''1 millisecond''';

-- The master key's check value (never the key); a rotation replaces the row.
CREATE TABLE {S}.secret_keys (
    project_id  TEXT NOT NULL,
    version     BIGINT NOT NULL,
    check_value BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, version)
);

CREATE TABLE {S}.secrets (
    project_id  TEXT NOT NULL,
    plugin      TEXT NOT NULL,
    setting     TEXT NOT NULL,
    key_version BIGINT NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (project_id, plugin, setting)
);

-- The audit chain. `at` is the text the MAC covers.
CREATE TABLE {S}.audit_log (
    project_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    at         TEXT NOT NULL,
    os_user    TEXT NOT NULL,
    host       TEXT NOT NULL,
    command    TEXT NOT NULL,
    action     TEXT NOT NULL,
    targets    TEXT NOT NULL,
    mac        BYTEA NOT NULL,
    PRIMARY KEY (project_id, seq)
);
CREATE INDEX audit_log_at ON {S}.audit_log (project_id, at);

CREATE TABLE {S}.audit_anchor (
    project_id TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    mac        BYTEA NOT NULL,
    anchor_mac BYTEA NOT NULL
);

-- The chain's head, one row per project: every transaction that appends to the chain locks it
-- first (`SELECT ... FOR UPDATE`), so appends from several hosts take turns and the chain
-- cannot fork; it also records the last link, so entries cut from the end show.
CREATE TABLE {S}.audit_head (
    project_id TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    mac        BYTEA NOT NULL
);

-- Config history, with the project file of each version (SQLite keeps it in a second table).
CREATE TABLE {S}.config_history (
    project_id  TEXT NOT NULL,
    plugin      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    plugin_type TEXT,
    at          TEXT NOT NULL,
    os_user     TEXT NOT NULL,
    command     TEXT NOT NULL,
    action      TEXT NOT NULL,
    setting     TEXT,
    yml         TEXT NOT NULL,
    yml_hash    TEXT NOT NULL,
    stored      TEXT NOT NULL,
    sealed      TEXT NOT NULL,
    environment TEXT,
    file_text   TEXT,
    PRIMARY KEY (project_id, plugin, version)
);

CREATE TABLE {S}.source_status_events (
    event_id   BIGSERIAL PRIMARY KEY,
    project_id TEXT NOT NULL,
    source     TEXT NOT NULL,
    status     TEXT NOT NULL,
    reason     TEXT,
    "user"     TEXT,
    origin     TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX source_status_events_by_source ON {S}.source_status_events (project_id, source, event_id);

CREATE TABLE {S}.api_tokens (
    project_id   TEXT NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    organisation TEXT,
    token_hash   BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    PRIMARY KEY (project_id, name),
    UNIQUE (project_id, token_hash)
);

CREATE TABLE {S}.webhook_events (
    id          BIGSERIAL PRIMARY KEY,
    project_id  TEXT NOT NULL,
    source      TEXT NOT NULL,
    event_id    TEXT,
    seq         BIGINT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    size        BIGINT NOT NULL,
    payload     TEXT NOT NULL,
    consumed_at TIMESTAMPTZ,
    UNIQUE (project_id, seq),
    UNIQUE (project_id, source, event_id)
);
CREATE INDEX webhook_events_by_source ON {S}.webhook_events (project_id, source, seq);

-- The last `seq` handed out to a project's events; never goes down.
CREATE TABLE {S}.webhook_sequence (
    project_id TEXT PRIMARY KEY,
    value      BIGINT NOT NULL
);

-- The last 64 KiB of each run's log (secrets redacted), for hosts that do not have the file.
ALTER TABLE {S}.runs ADD COLUMN log_tail TEXT;
