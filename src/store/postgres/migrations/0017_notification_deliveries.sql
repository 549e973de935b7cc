-- Version 17 on PostgreSQL: the SQLite store's 0017 adds the notification delivery log, which
-- the PostgreSQL store does not keep yet (recording a delivery is an error naming the feature).
-- The number moves in step so both backends share one schema version.
SELECT 1;
