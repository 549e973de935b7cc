-- The encrypted secret store and the HMAC-chained audit log (see src/secrets/).
-- IF NOT EXISTS: `secrets::schema::migrate` runs the same text on connections it is handed.
CREATE TABLE IF NOT EXISTS secret_keys (
    version     INTEGER PRIMARY KEY,
    check_value BLOB NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
    plugin      TEXT NOT NULL,
    setting     TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (plugin, setting)
);
CREATE TABLE IF NOT EXISTS audit_log (
    seq      INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    os_user  TEXT NOT NULL,
    host     TEXT NOT NULL,
    command  TEXT NOT NULL,
    action   TEXT NOT NULL,
    targets  TEXT NOT NULL,
    mac      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
CREATE TABLE IF NOT EXISTS audit_anchor (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    seq        INTEGER NOT NULL,
    mac        BLOB NOT NULL,
    anchor_mac BLOB NOT NULL
);
