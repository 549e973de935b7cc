-- Version 22 on PostgreSQL: merged streams (the SQLite store's 0004, 0006, 0009 and 0011 as they
-- stand now), every row under its project. Columns and their meaning are SQLite's, so
-- `dsm store copy` moves the rows as they are.

-- One row per key of a merged stream: every source's candidate and the record last sent; the
-- run that sent it (`sent_by`, an id of `merge_sends`) and the mark it was sent under.
CREATE TABLE {S}.merge_entities (
    project_id  TEXT NOT NULL,
    stream      TEXT NOT NULL,
    key         TEXT NOT NULL,
    candidates  TEXT NOT NULL,
    resolved    TEXT,
    quarantined INTEGER NOT NULL DEFAULT 0,
    sent_by     BIGINT,
    sent_mark   BIGINT,
    PRIMARY KEY (project_id, stream, key)
);

-- The last SCHEMA message each source sent for a merged stream.
CREATE TABLE {S}.merge_schemas (
    project_id TEXT NOT NULL,
    stream     TEXT NOT NULL,
    source     TEXT NOT NULL,
    schema     TEXT NOT NULL,
    PRIMARY KEY (project_id, stream, source)
);

-- The conflict log: one row per record that disagreed, its entries numbered from `id` (one per
-- field, `n` of them); ids are per project and handed out under a transaction-level lock.
CREATE TABLE {S}.merge_conflicts (
    project_id TEXT NOT NULL,
    id         BIGINT NOT NULL,
    stream     TEXT NOT NULL,
    key        TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    logged_at  TEXT NOT NULL,
    n          BIGINT NOT NULL,
    fields     TEXT NOT NULL,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX merge_conflicts_by_stream ON {S}.merge_conflicts (project_id, stream, logged_at);
CREATE INDEX merge_conflicts_by_run ON {S}.merge_conflicts (project_id, run_id);

-- Each run sending records of a merged stream, and how far its loader confirmed. Ids come from
-- a sequence and are never given again (a key naming a deleted row is confirmed).
CREATE TABLE {S}.merge_sends (
    project_id       TEXT NOT NULL,
    id               BIGSERIAL NOT NULL,
    stream           TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    confirmed_before BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, id),
    UNIQUE (project_id, stream, run_id)
);

-- What each run did to each merged stream from each source.
CREATE TABLE {S}.merge_run_stats (
    project_id  TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    stream      TEXT NOT NULL,
    source      TEXT NOT NULL,
    records_in  BIGINT NOT NULL DEFAULT 0,
    emitted     BIGINT NOT NULL DEFAULT 0,
    unchanged   BIGINT NOT NULL DEFAULT 0,
    same_output BIGINT NOT NULL DEFAULT 0,
    resent      BIGINT NOT NULL DEFAULT 0,
    conflicts   BIGINT NOT NULL DEFAULT 0,
    quarantined BIGINT NOT NULL DEFAULT 0,
    null_keys   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, run_id, stream, source)
);

-- One row per merged stream with key rows: a counter every batch that writes key rows moves
-- under the stream's transaction-level lock. A resolver that finds it where its own last batch
-- left it knows no other run added keys in between (see src/store/postgres/merged/).
CREATE TABLE {S}.merge_streams (
    project_id TEXT NOT NULL,
    stream     TEXT NOT NULL,
    generation BIGINT NOT NULL,
    PRIMARY KEY (project_id, stream)
);
