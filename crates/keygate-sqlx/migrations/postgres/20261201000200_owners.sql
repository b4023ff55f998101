-- keygate: owners' (accounts') own limits (PostgreSQL), shared by all their keys: windows
-- every key of the owner counts in together, and a monthly cap on their spend together
-- (recorded in keygate_spend under the owner's subject id).
CREATE TABLE IF NOT EXISTS keygate_owners (
    owner       TEXT        NOT NULL PRIMARY KEY,
    rate_limits JSONB       NOT NULL,             -- array, empty for none
    spend_cap   BIGINT      CHECK (spend_cap >= 0), -- micro-cents per month, NULL for uncapped
    updated_at  TIMESTAMPTZ NOT NULL
);
