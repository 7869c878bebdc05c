-- Integration registry revisions, and the table the `log` driver (dry-run target) writes.
-- depends: 0001_initial

-- Bumped on every change; hub.integrations events carry it so readers can order them.
ALTER TABLE integrations ADD COLUMN IF NOT EXISTS revision bigint NOT NULL DEFAULT 1;

-- One row per job the `log` driver delivered: what a real target would have received.
CREATE TABLE IF NOT EXISTS driver_log_deliveries (
    job_id             text PRIMARY KEY,
    integration_id     text NOT NULL,
    mutation_id        text NOT NULL,
    entity_type        text NOT NULL,
    entity_key         text NOT NULL,
    operation          text NOT NULL,
    priority           text NOT NULL,
    version            text,
    changes            jsonb NOT NULL,   -- slots always; old/new values only with include_values
    attempts           integer NOT NULL DEFAULT 1,
    first_delivered_at timestamptz NOT NULL DEFAULT now(),
    last_delivered_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS driver_log_deliveries_entity
    ON driver_log_deliveries (integration_id, entity_key);
