-- dsm system store, version 3: the source registry's status history. Operators set `inactive`,
-- `maintenance` or `active` (origin `operator`); connection tests add their results (origin
-- `test`). The current operator status is the newest `operator` row of a source. `syncing`,
-- `error` and run-derived `active` are never stored: they come from locks and run history.
CREATE TABLE source_status_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    source   TEXT NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT,
    user     TEXT,
    origin   TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX source_status_events_by_source ON source_status_events (source, event_id);
