"""Every service logs JSON lines by default (Faust's included) and says when it is ready."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor

pytestmark = pytest.mark.integration


def _entries(path: Path) -> list[dict[str, Any]]:
    """The log's lines as JSON; fails on a line that is not (text, terminal escape codes)."""
    text = path.read_text(errors="replace")
    assert "\x1b" not in text, f"terminal escape codes in {path.name}: {text[:300]!r}"
    out = []
    for line in text.splitlines():
        if line.startswith("%") and "|" in line:
            continue  # librdkafka's own lines (not through Python logging)
        out.append(json.loads(line))
    return out


def _ready(path: Path) -> list[dict[str, Any]]:
    return [e for e in _entries(path) if e.get("message") == "service ready"]


def test_mutator_and_projector_log_json_and_a_ready_line(pipeline: Supervisor) -> None:
    logs = {s.name: s.log_path for s in pipeline.services}
    wait_for(
        lambda: _ready(logs["mutator"]), timeout=120, what="mutator ready", supervisor=pipeline
    )
    wait_for(
        lambda: _ready(logs["projector"]), timeout=120, what="projector ready", supervisor=pipeline
    )
    [mutator_ready] = _ready(logs["mutator"])
    assert mutator_ready["service"] == "mutator" and mutator_ready["group"]
    starting = [e for e in _entries(logs["mutator"]) if e.get("message") == "service starting"]
    assert starting and starting[0]["role"] == "all"
    assert _ready(logs["projector"])[0]["group"] == "hub.projector.deliveries"


def test_the_entities_projector_says_it_is_ready(supervisor: Supervisor) -> None:
    svc = supervisor.start("entities-projector", "entities", "project")
    wait_for(lambda: _ready(svc.log_path), timeout=120, what="ready", supervisor=supervisor)
    [line] = _ready(svc.log_path)
    assert line["group"] == "hub.projector.entities" and line["topic"] == "hub.mutations"
