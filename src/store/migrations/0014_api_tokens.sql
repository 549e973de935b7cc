-- API tokens of `dsm serve` (`dsm tokens create|list|revoke`). Only a SHA-256 of each token is
-- kept: the token itself is shown once, when it is created.
CREATE TABLE IF NOT EXISTS api_tokens (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    organisation  TEXT,
    token_hash    BLOB NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    expires_at    TEXT,
    last_used_at  TEXT
);
