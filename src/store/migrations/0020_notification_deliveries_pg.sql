-- Version 20 on SQLite: nothing. The PostgreSQL store gains notification deliveries, which
-- SQLite has had since 0017; the number moves in step so both backends share one version.
SELECT 1;
