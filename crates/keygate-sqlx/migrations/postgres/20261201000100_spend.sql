-- keygate: the record of spend (PostgreSQL), per key and UTC month ('2026-12'), in
-- micro-cents. Meters write their charges here behind, in batches; a restart reads the
-- month's total back, so no cap is reset by it.
CREATE TABLE IF NOT EXISTS keygate_spend (
    key_id      TEXT   COLLATE "C" NOT NULL,
    month       TEXT   NOT NULL,
    micro_cents BIGINT NOT NULL CHECK (micro_cents >= 0),
    PRIMARY KEY (key_id, month)
);
