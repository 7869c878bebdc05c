"""Deduplication settings and memory; the database side is tested in the integration tests."""

from __future__ import annotations

import pytest

from pim_hub.runtime.settings import Settings
from pim_hub.services.ingest.akeneo import AkeneoClient
from pim_hub.services.ingest.dedupe import SeenIds
from pim_hub.services.ingest.enricher import Enricher
from pim_hub.services.ingest.settings import IngestSettings


def test_retention_defaults_to_a_week_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HUB_INGEST_DEDUPE_RETENTION_S", raising=False)
    assert IngestSettings().dedupe_retention_s == 7 * 24 * 3600
    monkeypatch.setenv("HUB_INGEST_DEDUPE_RETENTION_S", "86400")
    assert IngestSettings().dedupe_retention_s == 86400
    monkeypatch.setenv("HUB_INGEST_DEDUPE_RETENTION_S", "5")
    with pytest.raises(ValueError):
        IngestSettings()


def test_seen_ids_forget_the_oldest_first() -> None:
    seen = SeenIds(2)
    for event_id in ("a", "b", "a", "c"):
        seen.add(event_id)
    assert "a" in seen and "c" in seen and "b" not in seen and len(seen) == 2


def test_enricher_uses_the_database_only_when_configured() -> None:
    client = AkeneoClient(
        "http://127.0.0.1:1", client_id="cid", secret="sec", username="api", password="pw"
    )
    ingest = IngestSettings()
    memory_only = Enricher(Settings(database_url=None), ingest, client)
    assert memory_only.handled is None
    durable = Enricher(Settings(database_url="postgresql://h/db"), ingest, client, group_id="g")
    assert durable.handled is not None and durable.handled.group == "g"
