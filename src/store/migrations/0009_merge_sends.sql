-- dsm system store, version 9: the unconfirmed mark of a merged stream's key moves onto the
-- key's row (src/merge). Noting every sent key in `merge_unconfirmed` and deleting it again once
-- the loader confirmed cost one extra row written and removed per record sent.
--
-- Now each run that sends records of a merged stream has one row here, holding how far its
-- loader confirmed (`confirmed_before`: the sends tagged with a lower mark are in the target).
-- A key's row names the run that last sent it (`sent_by`) and the mark it was sent under
-- (`sent_mark`); it is unconfirmed while that run's row exists with `confirmed_before <=
-- sent_mark`. A run that ends well deletes its row. AUTOINCREMENT keeps the id of a deleted
-- row from being given to a later run, which would make old sends look unconfirmed again.
CREATE TABLE merge_sends (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    stream           TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    confirmed_before INTEGER NOT NULL DEFAULT 0,
    UNIQUE (stream, run_id)
);

ALTER TABLE merge_entities ADD COLUMN sent_by INTEGER;
ALTER TABLE merge_entities ADD COLUMN sent_mark INTEGER;

-- Keys an earlier run left unconfirmed stay unconfirmed: each such run gets a row confirming
-- nothing yet, and each key points at it with the highest mark it was noted under.
INSERT INTO merge_sends (stream, run_id)
    SELECT DISTINCT stream, run_id FROM merge_unconfirmed ORDER BY stream, run_id;
UPDATE merge_entities
   SET sent_by = u.sent_by, sent_mark = u.sent_mark
  FROM (SELECT u.stream, u.key, s.id AS sent_by, MAX(u.mark) AS sent_mark
          FROM merge_unconfirmed u
          JOIN merge_sends s ON s.stream = u.stream AND s.run_id = u.run_id
         GROUP BY u.stream, u.key) AS u
 WHERE merge_entities.stream = u.stream AND merge_entities.key = u.key;

DROP TABLE merge_unconfirmed;
