-- The last 64 KiB of each run's log (secrets redacted, as in the file), kept with the run so
-- `dsm logs` can show it where the file is gone (or, in team mode, on another host). The rest
-- of PostgreSQL's 0018 (team mode's secrets, audit chain, config history ...) SQLite has had
-- since its earlier migrations.
ALTER TABLE runs ADD COLUMN log_tail TEXT;
