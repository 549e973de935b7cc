-- dsm system store, version 2: conflict resolution for merged streams (src/merge). Written
-- with IF NOT EXISTS so `merge::store::migrate` can also apply it to a bare connection.

-- The current candidates of every source and the record last sent to the target, per key.
-- `candidates` is a JSON object: source name -> {"r": record (common names), "f": first seen,
-- "l": when the current value arrived}.
CREATE TABLE IF NOT EXISTS merge_entities (
    stream      TEXT NOT NULL,
    key         TEXT NOT NULL,
    candidates  TEXT NOT NULL,
    resolved    TEXT,
    quarantined INTEGER NOT NULL DEFAULT 0,
    run_id      TEXT NOT NULL,
    PRIMARY KEY (stream, key)
) WITHOUT ROWID;

-- The last SCHEMA message each source sent for a merged stream (to check a source synced
-- tomorrow against the ones synced today).
CREATE TABLE IF NOT EXISTS merge_schemas (
    stream  TEXT NOT NULL,
    source  TEXT NOT NULL,
    schema  TEXT NOT NULL,
    PRIMARY KEY (stream, source)
) WITHOUT ROWID;

-- Every disagreement: the candidates by source, the winner and the rule that chose it.
CREATE TABLE IF NOT EXISTS merge_conflicts (
    id             INTEGER PRIMARY KEY,
    stream         TEXT NOT NULL,
    key            TEXT NOT NULL,
    field          TEXT NOT NULL,
    candidates     TEXT NOT NULL,
    winner         TEXT,
    winning_source TEXT,
    rule           TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    logged_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS merge_conflicts_by_stream ON merge_conflicts (stream, logged_at);
CREATE INDEX IF NOT EXISTS merge_conflicts_by_run ON merge_conflicts (run_id);
CREATE INDEX IF NOT EXISTS merge_conflicts_by_time ON merge_conflicts (logged_at);
