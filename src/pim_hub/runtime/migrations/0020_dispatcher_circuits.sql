-- The circuit breaker and adaptive concurrency of each integration, as each dispatcher
-- process sees them (services/dispatcher/circuits.py writes, `hub integrations show` reads).
-- One row per integration, driver, priority and process (host:pid): every process keeps its
-- own breaker, so each says what it sees. A process rewrites its rows every few seconds and
-- at once when a state changes, and deletes them when it stops; rows of a process that died
-- stop being updated (updated_at) and are swept after a day.

CREATE TABLE IF NOT EXISTS dispatcher_circuits (
    integration_id  text NOT NULL,
    driver          text NOT NULL,
    priority        text NOT NULL,
    process         text NOT NULL,                 -- host:pid of the dispatcher
    state           text NOT NULL,                 -- closed, open, half_open
    opened_at       timestamptz,                   -- when the circuit opened (NULL: closed)
    last_probe      timestamptz,                   -- when the last probe went (this outage)
    next_probe      timestamptz,                   -- when the next probe may go (open only)
    concurrency     integer NOT NULL,              -- calls allowed at once now (AIMD)
    concurrency_max integer NOT NULL,              -- the configured concurrency
    throttled_until timestamptz,                   -- a 429's Retry-After holds calls until then
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, driver, priority, process)
);
