-- Events received by `POST /api/webhooks/{source}` (`dsm webhooks list|show|replay`). An event
-- is stored before the sender gets its 202 and stays pending until a run of its source has had
-- the loader confirm the STATE after it. `seq` orders deliveries: a replayed event gets a new,
-- higher one, so the tap's bookmark (the last `seq` it sent) never hides it.
CREATE TABLE IF NOT EXISTS webhook_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT NOT NULL,
    event_id     TEXT,
    seq          INTEGER NOT NULL UNIQUE,
    received_at  TEXT NOT NULL,
    size         INTEGER NOT NULL,
    payload      TEXT NOT NULL,
    consumed_at  TEXT,
    UNIQUE (source, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_events_by_source ON webhook_events (source, seq);

-- The last `seq` handed out; never goes down, also when the events holding it are deleted.
CREATE TABLE IF NOT EXISTS webhook_sequence (
    one    INTEGER PRIMARY KEY CHECK (one = 1),
    value  INTEGER NOT NULL
);
INSERT OR IGNORE INTO webhook_sequence (one, value) VALUES (1, 0);
