-- keygate: API keys and the revocation feed (PostgreSQL).
CREATE TABLE IF NOT EXISTS keygate_keys (
    -- "C" collation: listings order key ids by bytes, as every keygate store does.
    key_id          TEXT        COLLATE "C" NOT NULL PRIMARY KEY,
    owner           TEXT        NOT NULL,
    name            TEXT        NOT NULL,
    -- argon2id PHC string of the secret; the secret itself is never stored.
    secret_hash     TEXT        NOT NULL,
    scopes          JSONB       NOT NULL,        -- array of names
    environment     TEXT        NOT NULL CHECK (environment IN ('live', 'test')),
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ,
    revoked_at      TIMESTAMPTZ,
    metadata        JSONB       NOT NULL,
    rate_limits     JSONB,                       -- NULL for the gate's defaults
    spend_cap       BIGINT      CHECK (spend_cap >= 0), -- micro-cents per month, NULL for uncapped
    request_count   BIGINT      NOT NULL DEFAULT 0,
    last_used_at    TIMESTAMPTZ,
    last_user_agent TEXT
);

CREATE INDEX IF NOT EXISTS keygate_keys_owner ON keygate_keys (owner, created_at, key_id);
CREATE INDEX IF NOT EXISTS keygate_keys_created ON keygate_keys (created_at, key_id);

-- Appended to by revoke and set_expiry; running services poll it by seq.
CREATE TABLE IF NOT EXISTS keygate_key_changes (
    seq        BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id     TEXT        COLLATE "C" NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL
);
