"""examples/webhook_receiver.py, run as its own process, receiving from the real webhook driver."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
import pytest

from pim_hub.drivers.base import IntegrationContext
from pim_hub.drivers.webhook.driver import WebhookConfig, WebhookDriver
from pim_hub.schemas.events import Job

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webhook_receiver.py"
SECRET = "s3cret"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _job(job_id: str) -> Job:
    return Job.model_validate(
        {
            "job_id": job_id,
            "mutation": {
                "mutation_id": f"m-{job_id}",
                "entity_type": "product",
                "entity_key": "product:u-1",
                "operation": "update",
                "changes": [{"field": "enabled", "old": "false", "new": "true"}],
                "state": orjson.dumps({"uuid": "u-1", "enabled": True}).decode(),
                "version": "2026-12-01T11:00:00+00:00",
                "causation_id": "c",
                "source_received_at": NOW,
                "created_at": NOW,
            },
            "integration_id": "my-hook",
            "driver": "webhook",
            "priority": "normal",
            "created_at": NOW,
        }
    )


def _line(stream: IO[str]) -> dict[str, Any]:
    line = stream.readline()
    assert line, "the receiver exited"
    record: dict[str, Any] = json.loads(line)
    return record


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The example receiver on a free port, with a secret and an SQLite store of job ids."""
    db = tmp_path / "seen.sqlite"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0", "--secret", SECRET, "--db", str(db)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = _line(proc.stdout)
        assert ready["event"] == "ready"
        yield proc, f"http://127.0.0.1:{ready['port']}/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _deliver(url: str, secret: str, jobs: list[Job]) -> list[Any]:
    async def go() -> list[Any]:
        driver = WebhookDriver()
        ctx = IntegrationContext(
            integration_id="my-hook",
            config=WebhookConfig.model_validate({"url": url, "secret": secret}),
            mapping=None,  # type: ignore[arg-type]
            http=None,  # type: ignore[arg-type]
            logger=logging.getLogger("test"),
        )
        try:
            return [await driver.handle(job, ctx) for job in jobs]
        finally:
            await driver.close()

    return asyncio.run(go())


def test_the_example_applies_once_and_acknowledges_repeats(
    receiver: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = receiver
    assert proc.stdout is not None
    results = _deliver(url, SECRET, [_job("j-1"), _job("j-1"), _job("j-2")])
    assert [r.outcome for r in results] == ["delivered"] * 3
    applied = _line(proc.stdout)
    assert applied["event"] == "applied" and applied["job_id"] == "j-1"
    assert applied["entity_key"] == "product:u-1" and applied["mode"] == "live"
    assert applied["changes"][0]["new"] is True
    assert _line(proc.stdout) == {"event": "duplicate", "job_id": "j-1"}
    assert _line(proc.stdout)["job_id"] == "j-2"


def test_the_example_rejects_a_wrong_signature_permanently(
    receiver: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = receiver
    assert proc.stdout is not None
    [result] = _deliver(url, "not-the-secret", [_job("j-3")])
    assert result.outcome == "failed" and not result.retryable
    assert result.target_status == 401
    assert _line(proc.stdout) == {"event": "rejected", "reason": "bad signature"}
