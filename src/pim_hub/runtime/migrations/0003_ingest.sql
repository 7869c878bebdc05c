-- Ingest: resume points of REST sync runs (one per source and entity type while a run is under way).

CREATE TABLE IF NOT EXISTS sync_checkpoints (
    source          text NOT NULL,
    entity_type     text NOT NULL,
    mode            text NOT NULL,          -- full | delta
    since           timestamptz,            -- lower bound of `updated` (NULL: everything)
    run_started_at  timestamptz NOT NULL,   -- becomes the watermark when the run completes
    cursor          text,                   -- next page (path and query) still to read
    items           bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, entity_type)
);
