-- Versioned history of every change dsm makes to a plugin's configuration (src/secrets/history.rs).
-- Self-contained and idempotent (IF NOT EXISTS): `secrets::history` runs the same text on the
-- connections it is handed. Sensitive values are kept only as the secret store's ciphertext.
CREATE TABLE IF NOT EXISTS config_history (
    plugin      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    plugin_type TEXT,
    at          TEXT NOT NULL,
    os_user     TEXT NOT NULL,
    command     TEXT NOT NULL,
    action      TEXT NOT NULL,
    setting     TEXT,
    -- JSON: the plugin's entries in meltano.yml (top level and per environment), no secrets store.
    yml         TEXT NOT NULL,
    -- SHA-256 (hex) of `yml`: a later mismatch means meltano.yml was edited by hand.
    yml_hash    TEXT NOT NULL,
    -- JSON: the plugin's plain values in the system database's `settings` table.
    stored      TEXT NOT NULL,
    -- JSON: the plugin's rows of the secret store, still encrypted (base64 nonce and ciphertext).
    sealed      TEXT NOT NULL,
    PRIMARY KEY (plugin, version)
);
