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
