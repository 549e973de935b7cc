-- Secrets per environment: `scope` is '' for a value of the whole project, else the name of
-- the environment the value belongs to (a run in that environment gets it instead of the
-- project's). SQLite cannot change a primary key, so the table is rebuilt.
CREATE TABLE secrets_scoped (
    plugin      TEXT NOT NULL,
    setting     TEXT NOT NULL,
    scope       TEXT NOT NULL DEFAULT '',
    key_version INTEGER NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (plugin, setting, scope)
);
INSERT INTO secrets_scoped (plugin, setting, scope, key_version, nonce, ciphertext, updated_at, updated_by)
    SELECT plugin, setting, '', key_version, nonce, ciphertext, updated_at, updated_by FROM secrets;
DROP TABLE secrets;
ALTER TABLE secrets_scoped RENAME TO secrets;
