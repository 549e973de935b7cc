-- dsm system store, version 6: merged streams in real runs (src/merge, src/runner/merge_stage.rs).
-- Written with IF NOT EXISTS so `merge::store::migrate` can also apply it to a bare connection.

-- Keys whose resolved record was sent to the target but not yet confirmed by the loader (a
-- STATE it emitted after flushing). `mark` counts the extractor's STATE messages that passed
-- the merge stage before the record. A run that ends well removes its rows; rows left by a run
-- that crashed are sent again by the next run of the merged stream, so the target never lags
-- behind what the resolver believes it has.
CREATE TABLE IF NOT EXISTS merge_unconfirmed (
    stream  TEXT NOT NULL,
    run_id  TEXT NOT NULL,
    mark    INTEGER NOT NULL,
    key     TEXT NOT NULL,
    PRIMARY KEY (stream, run_id, mark, key)
) WITHOUT ROWID;

-- What each run did to each merged stream, for the run history (`dsm runs show`). Kept apart
-- from the conflict log so pruning the log does not change a run's counts.
CREATE TABLE IF NOT EXISTS merge_run_stats (
    run_id      TEXT NOT NULL,
    stream      TEXT NOT NULL,
    source      TEXT NOT NULL,
    records_in  INTEGER NOT NULL DEFAULT 0,
    emitted     INTEGER NOT NULL DEFAULT 0,
    unchanged   INTEGER NOT NULL DEFAULT 0,
    same_output INTEGER NOT NULL DEFAULT 0,
    resent      INTEGER NOT NULL DEFAULT 0,
    conflicts   INTEGER NOT NULL DEFAULT 0,
    quarantined INTEGER NOT NULL DEFAULT 0,
    null_keys   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, stream, source)
) WITHOUT ROWID;
