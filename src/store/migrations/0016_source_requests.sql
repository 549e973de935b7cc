-- Source requests (`dsm requests`, `/api/requests`): what a requester asked for, its status and
-- every transition. A pending request lives only here, never in `meltano.yml`. Its secrets are
-- rows of `secrets` under the plugin name `request:<id>` (sealed like every secret, re-keyed by
-- every rotation) until the request is approved (they move to the source), cancelled or pruned.
CREATE TABLE IF NOT EXISTS source_requests (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    organisation  TEXT,
    requester     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'cancelled')),
    -- The request as submitted (template or plugin, config, secret names, classification,
    -- description, notes), as JSON.
    revision      TEXT NOT NULL,
    -- The last connection test's document, as JSON.
    test          TEXT,
    reason        TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS source_requests_by_status ON source_requests (status, updated_at);
CREATE INDEX IF NOT EXISTS source_requests_by_requester ON source_requests (requester, created_at);

CREATE TABLE IF NOT EXISTS source_request_transitions (
    request_id  TEXT NOT NULL REFERENCES source_requests (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT,
    PRIMARY KEY (request_id, seq)
);

-- Two more token roles, `requester` and `approver`: SQLite cannot change a CHECK constraint in
-- place, so the token table is copied into one with the wider check.
CREATE TABLE api_tokens_0016 (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin', 'requester', 'approver')),
    organisation  TEXT,
    token_hash    BLOB NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    expires_at    TEXT,
    last_used_at  TEXT
);
INSERT INTO api_tokens_0016 (name, role, organisation, token_hash, created_at, created_by,
                             expires_at, last_used_at)
    SELECT name, role, organisation, token_hash, created_at, created_by, expires_at, last_used_at
    FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_0016 RENAME TO api_tokens;
