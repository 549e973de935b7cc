-- Version 22 on SQLite: nothing. The PostgreSQL store gains the merged-stream tables, which
-- SQLite has had since 0004 (last changed by 0011); the number moves in step so both backends
-- share one version.
SELECT 1;
