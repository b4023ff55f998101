-- keygate: owners' (accounts') own limits (SQLite), shared by all their keys: windows
-- every key of the owner counts in together, and a monthly cap on their spend together
-- (recorded in keygate_spend under the owner's subject id).
CREATE TABLE IF NOT EXISTS keygate_owners (
    owner       TEXT    NOT NULL PRIMARY KEY,
    rate_limits TEXT    NOT NULL,               -- JSON array, empty for none
    spend_cap   INTEGER CHECK (spend_cap >= 0), -- micro-cents per month, NULL for uncapped
    updated_at  TEXT    NOT NULL
);
