-- Counters of runs that `dsm runs prune` (or retention) removed, so that the totals `dsm
-- metrics` reports stay monotonic (Prometheus counters must never go down) while the history
-- itself stays bounded. `kind` is 'source' (subject: extractor, detail: run status), 'flow'
-- (subject: state id, detail: run status) or 'stream' (subject: extractor, detail: stream).
CREATE TABLE pruned_run_totals (
    kind    TEXT NOT NULL CHECK (kind IN ('source', 'flow', 'stream')),
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL,
    runs    INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    bytes   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, subject, detail)
) WITHOUT ROWID;
