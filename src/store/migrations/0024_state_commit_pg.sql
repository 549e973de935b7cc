-- Version 24 on SQLite: nothing. The PostgreSQL store gains a server-side function for a run's
-- bookmark commit; SQLite runs the same statements in-process, where nothing is gained by it.
-- The number moves in step so both backends share one version.
SELECT 1;
