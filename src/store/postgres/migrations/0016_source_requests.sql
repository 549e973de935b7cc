-- Version 16 on PostgreSQL: the SQLite store's 0016 adds source requests, which the PostgreSQL
-- store does not keep yet (submitting one is an error naming the feature). The number moves in
-- step so both backends share one schema version.
SELECT 1;
