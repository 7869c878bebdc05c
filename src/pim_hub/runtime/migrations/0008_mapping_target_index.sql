-- ID mappings: the index of reverse look-ups (target id -> source key) now starts with the
-- target id. It used to start with (integration_id, entity_type), like the primary key, so
-- the planner could take it for a look-up by source key and filter the integration's every
-- mapping row for each key: it did so for an integration its statistics did not know yet (a
-- new one, or one grown since the last ANALYZE). Led by target_id, it serves only the reverse
-- look-ups, which give all three columns.
-- depends: 0001_initial

DROP INDEX IF EXISTS entity_mappings_target;
CREATE INDEX IF NOT EXISTS entity_mappings_by_target
    ON entity_mappings (target_id, integration_id, entity_type);
