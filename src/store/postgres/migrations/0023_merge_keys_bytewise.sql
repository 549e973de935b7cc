-- Version 23 on PostgreSQL: the indexed text columns of the merged-stream tables that a sync
-- writes compare bytewise.
--
-- Every row a sync writes goes into these indexes; under the database's collation (often a
-- locale such as en_US.UTF-8) each comparison goes through the locale's rules, and those
-- comparisons were a tenth of the server's time in a sync. dsm only ever asks for these
-- columns by equality, sorts them bytewise (`COLLATE "C"`) or compares RFC 3339 UTC times,
-- whose bytewise order is their time order, so nothing it reads changes. The key rows keep
-- free room on each page (fillfactor 80), so that a later source's update of a key can stay on
-- its page without a new index entry.
ALTER TABLE {S}.merge_entities
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN stream TYPE TEXT COLLATE "C",
    ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE {S}.merge_entities SET (fillfactor = 80);
ALTER TABLE {S}.merge_conflicts
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN stream TYPE TEXT COLLATE "C",
    ALTER COLUMN run_id TYPE TEXT COLLATE "C",
    ALTER COLUMN logged_at TYPE TEXT COLLATE "C";
