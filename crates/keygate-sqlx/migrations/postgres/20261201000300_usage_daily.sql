-- keygate: usage per key per UTC day (requests, spend, refusals by code) ('2026-12-01'), written with each usage batch
-- and kept 90 days, for the usage route and its watch for unusual activity.
CREATE TABLE IF NOT EXISTS keygate_usage_daily (
    key_id   TEXT   COLLATE "C" NOT NULL,
    day      TEXT   NOT NULL,
    requests BIGINT NOT NULL CHECK (requests >= 0),
    -- micro-cents charged that day
    spend    BIGINT NOT NULL DEFAULT 0 CHECK (spend >= 0),
    -- requests of the proven key refused that day, by code
    refused_expired BIGINT NOT NULL DEFAULT 0 CHECK (refused_expired >= 0),
    refused_scope   BIGINT NOT NULL DEFAULT 0 CHECK (refused_scope >= 0),
    refused_quota   BIGINT NOT NULL DEFAULT 0 CHECK (refused_quota >= 0),
    refused_rate    BIGINT NOT NULL DEFAULT 0 CHECK (refused_rate >= 0),
    PRIMARY KEY (key_id, day)
);

CREATE INDEX IF NOT EXISTS keygate_usage_daily_day ON keygate_usage_daily (day);
