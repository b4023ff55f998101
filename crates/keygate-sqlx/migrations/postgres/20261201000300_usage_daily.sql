-- keygate: requests per key per UTC day ('2026-12-01'), written with each usage batch
-- and kept 90 days, for the usage route and its watch for unusual activity.
CREATE TABLE IF NOT EXISTS keygate_usage_daily (
    key_id   TEXT   COLLATE "C" NOT NULL,
    day      TEXT   NOT NULL,
    requests BIGINT NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (key_id, day)
);

CREATE INDEX IF NOT EXISTS keygate_usage_daily_day ON keygate_usage_daily (day);
