-- Per-entity order across priority lanes: the jobs each dispatcher has read and not finished.
-- A dispatcher holds a job while an older job of the same integration and entity is pending
-- here under another priority (see docs/delivery-semantics.md). A row goes with its job's
-- guard transaction; a row left by a crashed dispatcher is rewritten when the job is read
-- again and ignored once older than the hold limit (HUB_DISPATCHER_ORDER_HOLD_S).
-- depends: 0004_dispatcher

CREATE TABLE IF NOT EXISTS dispatch_pending (
    integration_id text NOT NULL,
    entity_key     text NOT NULL,
    job_id         text NOT NULL,
    priority       text NOT NULL,
    version        timestamptz NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, entity_key, job_id)
);
