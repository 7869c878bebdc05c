-- Ingest: event ids the enricher has turned into acknowledged snapshots (Akeneo delivers at
-- least once); shared by the replicas of a consumer group and kept across restarts.
-- depends: 0003_ingest

CREATE TABLE IF NOT EXISTS ingest_handled_events (
    consumer_group  text NOT NULL,          -- a replay under another group is not a duplicate
    event_id        text NOT NULL,
    handled_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);
-- Pruning deletes the rows older than the retention period.
CREATE INDEX IF NOT EXISTS ingest_handled_events_handled_at ON ingest_handled_events (handled_at);
