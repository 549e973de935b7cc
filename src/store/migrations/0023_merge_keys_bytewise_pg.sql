-- Version 23 on SQLite: nothing. The PostgreSQL store's merged-stream indexed columns change to a
-- bytewise collation, which SQLite's text comparisons already are; the number moves in step so
-- both backends share one version.
SELECT 1;
