-- Records a stage could not write to PostgreSQL (a DataError: NUL in text, a value out of
-- range), set aside with their reason so the stage moves on instead of crash-looping.

CREATE TABLE IF NOT EXISTS set_aside_records (
    id           bigserial PRIMARY KEY,
    stage        text NOT NULL,          -- projector.entities, projector.deliveries, enricher, ...
    topic        text NOT NULL,
    partition    integer NOT NULL,
    "offset"     bigint NOT NULL,
    record_key   text,                   -- the Kafka key, control characters escaped
    reason       text NOT NULL,          -- short code (data_error, ...)
    message      text NOT NULL,          -- what PostgreSQL said, control characters escaped
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stage, topic, partition, "offset")
);
CREATE INDEX IF NOT EXISTS set_aside_records_recent ON set_aside_records (recorded_at);
