-- Local model: latest state of every entity and of every value, projected from hub.mutations.

CREATE TABLE IF NOT EXISTS entities (
    entity_key     text PRIMARY KEY,      -- "<entity_type>:<code or uuid>"
    entity_type    text NOT NULL,
    code           text,                  -- code, or the product identifier (SKU)
    deleted        boolean NOT NULL DEFAULT false,
    version        timestamptz,           -- source version (Akeneo `updated`) of the last mutation
    mutation_id    text NOT NULL,         -- the mutation that last touched the entity
    operation      text NOT NULL,         -- create / update / delete
    state          jsonb,                 -- canonical state; for a deleted entity the last known one
    mutated_at     timestamptz NOT NULL,  -- created_at of that mutation (orders equal versions)
    projected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS entities_type_code ON entities (entity_type, code);

-- One row per value (attribute, locale, channel); locale/channel NULL when not localizable/scopable.
CREATE TABLE IF NOT EXISTS entity_values (
    entity_key     text NOT NULL REFERENCES entities (entity_key) ON DELETE CASCADE,
    attribute      text NOT NULL,
    locale         text,
    channel        text,
    data           jsonb NOT NULL,        -- as Akeneo sent it ("12.5000" stays "12.5000")
    attribute_type text,
    version        timestamptz,           -- source version of the mutation that last changed it
    mutation_id    text NOT NULL,
    projected_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entity_values_slot UNIQUE NULLS NOT DISTINCT (entity_key, attribute, locale, channel)
);
CREATE INDEX IF NOT EXISTS entity_values_attribute ON entity_values (attribute);
