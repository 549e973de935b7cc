-- Notification deliveries (`annotations.dsm.notifications`): one row per attempt, so failed
-- deliveries show in `dsm health` and the dashboard. Bounded by age and count when written.
CREATE TABLE IF NOT EXISTS notification_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT NOT NULL,
    event        TEXT NOT NULL,
    source       TEXT,
    receiver     TEXT NOT NULL,
    attempt      INTEGER NOT NULL CHECK (attempt >= 1),
    at           TEXT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'failed')),
    detail       TEXT
);
CREATE INDEX IF NOT EXISTS notification_deliveries_at ON notification_deliveries (at);
