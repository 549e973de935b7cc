-- For each config history version (src/secrets/history.rs): the environment the change was made
-- in (NULL for the top level) and the whole of meltano.yml after it, so a rollback can restore
-- the file byte for byte (comments, quoting, order) when nothing else in it changed since.
-- Self-contained and idempotent (IF NOT EXISTS), like migration 7.
CREATE TABLE IF NOT EXISTS config_history_files (
    plugin      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    environment TEXT,
    file_text   TEXT,
    PRIMARY KEY (plugin, version)
);
