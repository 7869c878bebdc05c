-- Dead letters as a read model: hub.jobs.dead copied into PostgreSQL as it grows, so the
-- console's dead-letter page reads rows instead of the topic from its start on every load.
-- `dead_letter_positions` holds, per partition, the next offset to copy; rows and positions
-- are written in one transaction, so each record is copied exactly once. Which dead letters
-- were redriven stays in dead_letter_redrives (the redrive itself still reads the topic).
-- depends: 0004_dispatcher

CREATE TABLE IF NOT EXISTS dead_letters (
    dead_partition integer NOT NULL,
    dead_offset    bigint NOT NULL,
    job_id         text,                 -- NULL: the record was not a decodable job
    integration_id text,
    kind           text NOT NULL,        -- error.type header (http_422, ...)
    reason         text NOT NULL,        -- error.message header, else the job's last error
    job            jsonb,                -- the decoded job, for display only
    dead_at        timestamptz NOT NULL, -- the record's timestamp
    PRIMARY KEY (dead_partition, dead_offset)
);
CREATE INDEX IF NOT EXISTS dead_letters_group ON dead_letters (integration_id, kind);
CREATE INDEX IF NOT EXISTS dead_letters_job ON dead_letters (job_id);

CREATE TABLE IF NOT EXISTS dead_letter_positions (
    dead_partition integer PRIMARY KEY,
    next_offset    bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
