-- What a run passed to its loader and what the loader confirmed (records read are the sum of
-- `run_streams`). NULL for runs recorded before these were counted.
ALTER TABLE runs ADD COLUMN records_sent INTEGER;
ALTER TABLE runs ADD COLUMN records_confirmed INTEGER;
