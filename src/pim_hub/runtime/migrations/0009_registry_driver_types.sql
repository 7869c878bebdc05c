-- The entity types each integration's driver takes, recorded when the integration is written,
-- so that fan-out learns them from the registry instead of importing every driver.
-- NULL for rows written before: fan-out then sends every type until the row is written again.
ALTER TABLE integrations ADD COLUMN IF NOT EXISTS driver_entity_types text[];
