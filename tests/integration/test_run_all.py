"""`hub run`: starts exactly the dispatchers the integrations need, follows the registry,
and stops every child on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.drivers.discovery import discover
from pim_hub.ops.dispatchers import needed_dispatchers
from pim_hub.registry.model import Integration
from pim_hub.registry.queue_map import parse_queue_map
from pim_hub.registry.service import upsert_integration
from pim_hub.registry.store import list_integrations, set_enabled

pytestmark = pytest.mark.integration


def _log(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _expected(database_url: str) -> set[str]:
    needs = needed_dispatchers(list_integrations(database_url), parse_queue_map(None))
    return {f"dispatcher-{n.driver}-{n.priority}" for n in needs}


def _running(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Services started and not stopped since, by name -> pid."""
    running: dict[str, int] = {}
    for e in entries:
        if e.get("message") == "service started":
            running[e["service"]] = e["pid"]
        elif e.get("message") == "service stopped":
            running.pop(e["service"], None)
    return running


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_hub_run_starts_the_needed_dispatchers_and_stops_everything(
    supervisor: Supervisor, database_url: str, unique: str
) -> None:
    iid = f"run-{unique}"
    upsert_integration(
        database_url,
        discover(),
        Integration(
            iid, iid, "webhook_test", True, {"url": "http://127.0.0.1:9/"}, ["product"], {}
        ),
    )
    expected = _expected(database_url)
    # Products alone reach immediate and normal live; low is for its replays and resyncs.
    assert {
        "dispatcher-webhook_test-immediate",
        "dispatcher-webhook_test-normal",
        "dispatcher-webhook_test-low",
    } <= expected
    # The mutator, enricher and deliveries projector of the session run already: this one
    # runs the entity projector and the dispatchers.
    svc = supervisor.start(
        "run",
        "run",
        "--without",
        "mutator",
        "--without",
        "enricher",
        "--without",
        "projector",
        "--refresh",
        "2",
    )
    wait_for(
        lambda: set(_running(_log(svc.log_path))) == {"entities", *expected},
        timeout=120,
        what="hub run started its services",
        supervisor=supervisor,
    )
    wait_for(
        lambda: (
            "hub.projector.entities"
            in {e.get("group") for e in _log(svc.log_path) if e.get("message") == "service ready"}
        ),
        timeout=120,
        what="the entity projector is ready",
        supervisor=supervisor,
    )

    # Disabling the integration stops the dispatchers only it needed.
    set_enabled(database_url, iid, False)
    expected_after = _expected(database_url)
    wait_for(
        lambda: set(_running(_log(svc.log_path))) == {"entities", *expected_after},
        timeout=60,
        what="hub run stopped the dispatchers no longer needed",
        supervisor=supervisor,
    )

    pids = _running(_log(svc.log_path))
    svc.process.send_signal(signal.SIGINT)
    assert svc.process.wait(timeout=90) == 0
    supervisor.services.remove(svc)
    assert not [name for name, pid in pids.items() if _alive(pid)]
    stopped = {e["service"] for e in _log(svc.log_path) if e.get("message") == "service stopped"}
    assert set(pids) <= stopped
