-- dsm system store, version 1: state (Meltano's shape), state events, flow locks, run history,
-- settings stored in the database. Timestamps are RFC 3339 UTC text with milliseconds, so they
-- sort as text.

-- One row per state id, like Meltano's `state` table: the partial state is merged over the
-- completed state when read.
CREATE TABLE state (
    state_id        TEXT PRIMARY KEY NOT NULL,
    partial_state   TEXT NOT NULL DEFAULT '{}',
    completed_state TEXT NOT NULL DEFAULT '{}',
    updated_at      TEXT NOT NULL
);

-- Every change of a state row, for the audit log.
CREATE TABLE state_events (
    event_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    state_id   TEXT NOT NULL,
    at         TEXT NOT NULL,
    action     TEXT NOT NULL,
    run_id     TEXT,
    detail     TEXT,
    payload    TEXT
);
CREATE INDEX state_events_by_state ON state_events (state_id, event_id);

-- At most one running flow per state id, across processes.
CREATE TABLE flow_locks (
    state_id     TEXT PRIMARY KEY NOT NULL,
    token        TEXT NOT NULL,
    run_id       TEXT,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    acquired_at  TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);

CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY NOT NULL,
    state_id     TEXT,
    environment  TEXT,
    trigger      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    heartbeat_at TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed', 'killed')),
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    error        TEXT,
    log_path     TEXT
);
CREATE INDEX runs_by_start ON runs (started_at);
CREATE INDEX runs_by_state ON runs (state_id, started_at);

CREATE TABLE run_plugins (
    run_id    TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    plugin    TEXT NOT NULL,
    role      TEXT NOT NULL,
    exit_code INTEGER,
    PRIMARY KEY (run_id, plugin)
);

CREATE TABLE run_streams (
    run_id  TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    stream  TEXT NOT NULL,
    records INTEGER NOT NULL DEFAULT 0,
    bytes   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, stream)
);

-- Plugin settings stored in the system database (Meltano's `config set --store=db`).
-- `value` is JSON text.
CREATE TABLE settings (
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
