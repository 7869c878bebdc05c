-- The job's operation (create, update, delete), carried by DeliveryStatus from schema v2 on.
-- Rows projected from older statuses keep NULL; `hub deliveries` then falls back to the
-- entity model, which knows the operation of an entity's latest mutation.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS operation text;
