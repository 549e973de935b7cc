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

-- Each source's counts, kept by triggers, so the bounds are checked on every event without
-- counting the source's rows.
CREATE TABLE IF NOT EXISTS webhook_totals (
    source    TEXT PRIMARY KEY,
    pending   INTEGER NOT NULL DEFAULT 0,
    consumed  INTEGER NOT NULL DEFAULT 0,
    bytes     INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER IF NOT EXISTS webhook_events_counted_in AFTER INSERT ON webhook_events BEGIN
    INSERT OR IGNORE INTO webhook_totals (source) VALUES (NEW.source);
    UPDATE webhook_totals
    SET pending = pending + (NEW.consumed_at IS NULL),
        consumed = consumed + (NEW.consumed_at IS NOT NULL),
        bytes = bytes + NEW.size
    WHERE source = NEW.source;
END;
CREATE TRIGGER IF NOT EXISTS webhook_events_counted_out AFTER DELETE ON webhook_events BEGIN
    UPDATE webhook_totals
    SET pending = pending - (OLD.consumed_at IS NULL),
        consumed = consumed - (OLD.consumed_at IS NOT NULL),
        bytes = bytes - OLD.size
    WHERE source = OLD.source;
END;
CREATE TRIGGER IF NOT EXISTS webhook_events_counted_again AFTER UPDATE OF consumed_at ON webhook_events BEGIN
    UPDATE webhook_totals
    SET pending = pending - (OLD.consumed_at IS NULL) + (NEW.consumed_at IS NULL),
        consumed = consumed - (OLD.consumed_at IS NOT NULL) + (NEW.consumed_at IS NOT NULL)
    WHERE source = NEW.source;
END;
