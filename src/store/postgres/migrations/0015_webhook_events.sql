-- Version 15 on PostgreSQL: the SQLite store's 0015 adds webhook events, which the PostgreSQL
-- store does not keep yet (receiving one is an error naming the feature). The number moves in
-- step so both backends share one schema version.
SELECT 1;
