from __future__ import annotations

import io
import json
import logging

import pytest

from pim_hub.runtime import logs


@pytest.fixture
def captured() -> io.StringIO:
    logs.configure("INFO", "json")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


def test_json_lines_carry_the_stable_keys(captured: io.StringIO) -> None:
    extra: dict[str, object] = {
        "event_id": "e1",
        "entity_key": "product:1",
        "integration": "shop",
        "job_id": "j1",
    }
    extra |= {"topic": "hub.jobs.normal", "partition": 3, "offset": 42}
    logging.getLogger("hub.test").info("job delivered", extra=extra)
    line = json.loads(captured.getvalue().splitlines()[-1])
    assert {k: line[k] for k in logs.STABLE_KEYS} == extra
    assert line["message"] == "job delivered" and line["level"] == "INFO"


def test_payloads_and_secrets_never_reach_the_log(captured: io.StringIO) -> None:
    logging.getLogger("hub.test").warning(
        "bad", extra={"payload": {"sku": "SECRET-SKU"}, "password": "hunter2", "job_id": "j2"}
    )
    text = captured.getvalue()
    assert "SECRET-SKU" not in text and "hunter2" not in text
    line = json.loads(text.splitlines()[-1])
    assert line["payload"] == "[redacted]" and line["job_id"] == "j2"
