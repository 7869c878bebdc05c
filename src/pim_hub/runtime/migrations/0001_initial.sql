-- pim-hub initial schema: integrations, delivery projection, ID mappings, version guard, sync watermarks.

CREATE TABLE IF NOT EXISTS integrations (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    driver        text NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    config        jsonb NOT NULL DEFAULT '{}'::jsonb,
    entity_types  text[],              -- NULL: every type the driver supports
    priority_map  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Latest status per job, projected from hub.delivery-status.
CREATE TABLE IF NOT EXISTS deliveries (
    job_id         text PRIMARY KEY,
    mutation_id    text NOT NULL,
    integration_id text NOT NULL,
    driver         text NOT NULL,
    entity_key     text NOT NULL,
    priority       text NOT NULL,
    status         text NOT NULL,
    attempt        integer NOT NULL,
    error_kind     text,
    error_message  text,
    target_ref     text,
    duration_ms    double precision NOT NULL DEFAULT 0,
    occurred_at    timestamptz NOT NULL,
    projected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deliveries_entity ON deliveries (entity_key);
CREATE INDEX IF NOT EXISTS deliveries_integration_status ON deliveries (integration_id, status);

CREATE TABLE IF NOT EXISTS entity_mappings (
    integration_id text NOT NULL,
    entity_type    text NOT NULL,
    source_key     text NOT NULL,
    target_id      text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, entity_type, source_key)
);
CREATE INDEX IF NOT EXISTS entity_mappings_target ON entity_mappings (integration_id, entity_type, target_id);

-- Field-level version guard: the source version last delivered per integration, entity and field.
CREATE TABLE IF NOT EXISTS delivered_versions (
    integration_id text NOT NULL,
    entity_key     text NOT NULL,
    field_key      text NOT NULL,      -- field|attribute|locale|scope
    version        timestamptz NOT NULL,
    job_id         text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, entity_key, field_key)
);

CREATE TABLE IF NOT EXISTS sync_watermarks (
    source       text NOT NULL,
    entity_type  text NOT NULL,
    watermark    timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, entity_type)
);
