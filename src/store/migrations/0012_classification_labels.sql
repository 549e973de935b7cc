-- dsm system store, version 12: classification labels. Each run records the label of every
-- stream it sent (derived before the loader started), and a quarantine file the label of its
-- stream.
ALTER TABLE run_artifacts ADD COLUMN label TEXT;
CREATE TABLE IF NOT EXISTS run_stream_labels (
    run_id  TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    stream  TEXT NOT NULL,
    label   TEXT NOT NULL,
    rank    INTEGER NOT NULL,
    because TEXT NOT NULL,
    PRIMARY KEY (run_id, stream)
) WITHOUT ROWID;
