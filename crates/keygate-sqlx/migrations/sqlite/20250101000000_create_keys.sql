-- keygate: API keys and the revocation feed (SQLite).
-- Timestamps are RFC 3339 text in UTC, which sorts in time order.
CREATE TABLE IF NOT EXISTS keygate_keys (
    key_id          TEXT    NOT NULL PRIMARY KEY,
    owner           TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    -- argon2id PHC string of the secret; the secret itself is never stored.
    secret_hash     TEXT    NOT NULL,
    scopes          TEXT    NOT NULL,            -- JSON array of names
    environment     TEXT    NOT NULL CHECK (environment IN ('live', 'test')),
    created_at      TEXT    NOT NULL,
    expires_at      TEXT,
    revoked_at      TEXT,
    metadata        TEXT    NOT NULL,            -- JSON
    rate_limits     TEXT,                        -- JSON array, NULL for the gate's defaults
    spend_cap       INTEGER,                     -- micro-cents per month, NULL for uncapped
    request_count   INTEGER NOT NULL DEFAULT 0,
    last_used_at    TEXT,
    last_user_agent TEXT
);

CREATE INDEX IF NOT EXISTS keygate_keys_owner ON keygate_keys (owner, created_at, key_id);
CREATE INDEX IF NOT EXISTS keygate_keys_created ON keygate_keys (created_at, key_id);

-- Appended to by revoke and set_expiry; running services poll it by seq.
CREATE TABLE IF NOT EXISTS keygate_key_changes (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    key_id     TEXT    NOT NULL,
    changed_at TEXT    NOT NULL
);
