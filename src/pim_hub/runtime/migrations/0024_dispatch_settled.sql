-- Per-entity order across priority lanes, for jobs a lane has not read yet: a job names the
-- job of its entity and integration it must not overtake (record header pimhub.prev-job), and
-- a dispatcher holds it until that job is listed here or in delivered_jobs (see
-- docs/delivery-semantics.md). A row is written in the guard transaction that records a
-- job's outcome other than delivered (skipped, retrying, dead); rows older than the retention
-- are deleted by the dispatchers.
-- depends: 0012_dispatch_pending

CREATE TABLE IF NOT EXISTS dispatch_settled (
    integration_id text NOT NULL,
    job_id         text NOT NULL,
    settled_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, job_id)
);

CREATE INDEX IF NOT EXISTS dispatch_settled_at ON dispatch_settled (settled_at);
