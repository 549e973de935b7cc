-- dsm system store, version 11: fewer and smaller rows for merged streams (src/merge).
--
-- 1. The conflict log gets one row per record that disagreed with other sources on some
--    fields, instead of one row per field: a merge of a million records logged hundreds of
--    thousands of rows, each written to the table and two indexes with its stream, key, run
--    and time repeated. `fields` is a JSON array with one array per disagreeing field:
--      [field, candidates by source, winner, winning source, rule, outcome]
--    (winner and winning source are null unless the outcome is `resolved`). A row's entries
--    keep ids of their own: the row's `id` is the first one's and the next `n - 1` ids belong
--    to the others, so `dsm conflicts show ID` still shows one field, and the ids of the rows
--    written before this version do not change (each becomes a row of one field).
--
-- 2. Key rows move to a table with rowids. A WITHOUT ROWID table stores whole rows in the
--    interior pages of its B-tree too; key rows hold every source's record, so few fitted on a
--    page and inserting keys split pages all the time. Its unused `run_id` column goes.

CREATE TABLE merge_conflicts_v11 (
    id        INTEGER PRIMARY KEY,
    stream    TEXT NOT NULL,
    key       TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    logged_at TEXT NOT NULL,
    n         INTEGER NOT NULL,
    fields    TEXT NOT NULL
);
INSERT INTO merge_conflicts_v11 (id, stream, key, run_id, logged_at, n, fields)
    SELECT id, stream, key, run_id, logged_at, 1,
           json_array(json_array(
               field,
               CASE WHEN json_valid(candidates) THEN json(candidates) ELSE candidates END,
               CASE WHEN json_valid(winner) THEN json(winner) ELSE winner END,
               winning_source, rule, outcome))
      FROM merge_conflicts
     ORDER BY id;
DROP TABLE merge_conflicts;
ALTER TABLE merge_conflicts_v11 RENAME TO merge_conflicts;
CREATE INDEX merge_conflicts_by_stream ON merge_conflicts (stream, logged_at);
CREATE INDEX merge_conflicts_by_run ON merge_conflicts (run_id);

CREATE TABLE merge_entities_v11 (
    stream      TEXT NOT NULL,
    key         TEXT NOT NULL,
    candidates  TEXT NOT NULL,
    resolved    TEXT,
    quarantined INTEGER NOT NULL DEFAULT 0,
    sent_by     INTEGER,
    sent_mark   INTEGER,
    PRIMARY KEY (stream, key)
);
INSERT INTO merge_entities_v11 (stream, key, candidates, resolved, quarantined, sent_by, sent_mark)
    SELECT stream, key, candidates, resolved, quarantined, sent_by, sent_mark
      FROM merge_entities
     ORDER BY stream, key;
DROP TABLE merge_entities;
ALTER TABLE merge_entities_v11 RENAME TO merge_entities;
