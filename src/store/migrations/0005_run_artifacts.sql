-- dsm system store, version 5: files a run left behind besides its log, such as the
-- dead-letter (quarantine) file of the records validation set aside, one per stream.
CREATE TABLE IF NOT EXISTS run_artifacts (
    run_id  TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    path    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    stream  TEXT,
    records INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
