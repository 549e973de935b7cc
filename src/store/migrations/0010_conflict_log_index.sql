-- dsm system store, version 10: one index fewer on the conflict log (src/merge). Every
-- conflict-log row was written to four B-trees; a merge of a million records logs hundreds of
-- thousands of rows, and the index on `logged_at` alone served only `dsm conflicts prune`
-- without `--stream`, which now prunes stream by stream through `merge_conflicts_by_stream`.
DROP INDEX IF EXISTS merge_conflicts_by_time;
