-- The PostgreSQL system store at schema version 14 (the SQLite store's 0001..0014 are folded
-- into this one: no PostgreSQL store existed before it). `{S}` is the store's schema. Every
-- table starts with `project_id`: several projects may share one schema. Times are
-- `timestamptz` set from the server's clock; JSON is kept as text so numbers keep their exact
-- digits and objects their key order.

CREATE TABLE {S}.state (
    project_id      TEXT NOT NULL,
    state_id        TEXT NOT NULL,
    completed_state TEXT NOT NULL,
    partial_state   TEXT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, state_id)
);

CREATE TABLE {S}.state_events (
    event_id   BIGSERIAL PRIMARY KEY,
    project_id TEXT NOT NULL,
    state_id   TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    action     TEXT NOT NULL,
    run_id     TEXT,
    detail     TEXT,
    payload    TEXT
);
CREATE INDEX state_events_by_id ON {S}.state_events (project_id, state_id, event_id);

-- One lease row per flow. `fence` grows by one with every taking and is never reset: a
-- released lease keeps its row with `token` NULL.
CREATE TABLE {S}.flow_locks (
    project_id   TEXT NOT NULL,
    state_id     TEXT NOT NULL,
    token        TEXT,
    fence        BIGINT NOT NULL,
    run_id       TEXT,
    pid          BIGINT NOT NULL,
    host         TEXT NOT NULL,
    acquired_at  TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, state_id)
);

CREATE TABLE {S}.runs (
    project_id   TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    state_id     TEXT,
    environment  TEXT,
    trigger      TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    status       TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    host         TEXT NOT NULL,
    error        TEXT,
    log_path     TEXT,
    PRIMARY KEY (project_id, run_id)
);
CREATE INDEX runs_by_start ON {S}.runs (project_id, started_at DESC);
CREATE INDEX runs_by_state_id ON {S}.runs (project_id, state_id, started_at DESC);

CREATE TABLE {S}.run_plugins (
    project_id TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    seq        BIGSERIAL,
    plugin     TEXT NOT NULL,
    role       TEXT NOT NULL,
    exit_code  INTEGER,
    PRIMARY KEY (project_id, run_id, plugin),
    FOREIGN KEY (project_id, run_id) REFERENCES {S}.runs (project_id, run_id)
);

CREATE TABLE {S}.run_streams (
    project_id TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    stream     TEXT NOT NULL,
    records    BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    PRIMARY KEY (project_id, run_id, stream),
    FOREIGN KEY (project_id, run_id) REFERENCES {S}.runs (project_id, run_id)
);

CREATE TABLE {S}.run_artifacts (
    project_id TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    path       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    stream     TEXT,
    records    BIGINT NOT NULL,
    label      TEXT,
    PRIMARY KEY (project_id, run_id, path),
    FOREIGN KEY (project_id, run_id) REFERENCES {S}.runs (project_id, run_id)
);

CREATE TABLE {S}.run_stream_labels (
    project_id TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    stream     TEXT NOT NULL,
    label      TEXT NOT NULL,
    rank       INTEGER NOT NULL,
    because    TEXT NOT NULL,
    PRIMARY KEY (project_id, run_id, stream)
);

CREATE TABLE {S}.pruned_run_totals (
    project_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    runs       BIGINT NOT NULL DEFAULT 0,
    records    BIGINT NOT NULL DEFAULT 0,
    bytes      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, kind, subject, detail)
);

CREATE TABLE {S}.settings (
    project_id TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, namespace, name)
);

-- Milliseconds since the epoch: how dsm reads every time back.
CREATE FUNCTION {S}.epoch_ms(t TIMESTAMPTZ) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE AS 'SELECT (EXTRACT(EPOCH FROM t) * 1000)::BIGINT';
