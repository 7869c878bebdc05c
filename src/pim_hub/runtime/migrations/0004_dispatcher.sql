-- Dispatcher: dead letters already redriven (each dead-letter record is redriven at most once).
-- depends: 0001_initial

CREATE TABLE IF NOT EXISTS dead_letter_redrives (
    dead_partition integer NOT NULL,
    dead_offset    bigint NOT NULL,
    job_id         text NOT NULL,
    integration_id text NOT NULL,
    priority       text NOT NULL,
    redriven_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dead_partition, dead_offset)
);
CREATE INDEX IF NOT EXISTS dead_letter_redrives_job ON dead_letter_redrives (job_id);

-- Jobs delivered per integration: a job read again after a crash reports `delivered` again
-- instead of being judged against versions it recorded itself. Safe to purge after the
-- job topics' retention (7 days).
CREATE TABLE IF NOT EXISTS delivered_jobs (
    integration_id text NOT NULL,
    job_id         text NOT NULL,
    delivered_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, job_id)
);
