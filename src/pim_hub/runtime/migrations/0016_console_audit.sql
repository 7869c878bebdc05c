-- The operations console's audit log: every action taken in the console (who, when, what,
-- how many jobs), kept in the database and shown in the console.
CREATE TABLE IF NOT EXISTS console_audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,             -- the signed-in user (or "local" on open loopback)
    role        text NOT NULL,
    action      text NOT NULL,             -- redrive, replay, resync, enable, disable, sign-in
    target      text NOT NULL DEFAULT '',  -- an integration, a dead-letter group, a run id
    jobs        integer,                   -- jobs sent (NULL: the action sends none)
    outcome     text NOT NULL,             -- ok, refused, failed
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS console_audit_at ON console_audit (at DESC);
