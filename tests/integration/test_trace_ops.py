"""`hub trace` of an entity through a failed delivery, its dead letter and a redrive."""

from __future__ import annotations

import time

import orjson
import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.stack import query, wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.registry.store import set_enabled
from pim_hub.runtime.settings import Settings
from tests.integration.test_replay_ops import REFRESH_S, Feed, add_webhook, version

pytestmark = pytest.mark.integration


def test_trace_shows_an_entity_through_a_failure_and_a_redrive(
    pipeline: Supervisor,
    hub_settings: Settings,
    hub_env: dict[str, str],
    database_url: str,
    unique: str,
) -> None:
    sink = HttpSink(script=[(400, {})]).start()  # the first delivery is refused for good
    try:
        iid = f"trc-{unique}"
        add_webhook(database_url, iid, f"{sink.url}/{iid}")
        time.sleep(REFRESH_S)
        feed = Feed(hub_settings, unique)
        key = feed.key(1)
        feed.publish(1, "Traced", version(10))

        def status() -> str | None:
            rows = query(
                database_url, "SELECT status FROM deliveries WHERE integration_id = %s", iid
            )
            return rows[0]["status"] if rows else None

        wait_for(lambda: status() == "dead", timeout=60, what="a dead job", supervisor=pipeline)
        redriven = CliRunner().invoke(app, ["dead", "redrive", "--integration", iid], env=hub_env)
        assert redriven.exit_code == 0, redriven.output
        wait_for(
            lambda: status() == "delivered", timeout=60, what="redelivery", supervisor=pipeline
        )
        assert len(sink.bodies(key)) == 1

        out = CliRunner().invoke(app, ["trace", key, "--json"], env=hub_env)
        assert out.exit_code == 0, out.output
        trace = orjson.loads(out.output)
        assert trace["keys"] == [key]
        timeline = [e for e in trace["timeline"] if e.get("integration_id") in (None, iid)]
        stages = [e["stage"] for e in timeline]
        assert stages[:2] == ["snapshot", "mutation"], stages
        mutation = timeline[1]
        assert mutation["operation"] == "create"
        assert {"attribute": "name", "new": "Traced"}.items() <= next(
            c for c in mutation["changes"] if c["attribute"] == "name"
        ).items()
        steps = [(e["stage"], e.get("mode") or e.get("status")) for e in timeline[2:]]
        assert steps == [
            ("job", "live"),
            ("dead-letter", "live"),
            ("status", "dead"),
            ("job", "redrive"),
            ("status", "retrying"),
            ("status", "delivered"),
        ], steps
        dead = timeline[4]
        assert dead["error_kind"] == "http_400" and "400" in dead["error_message"]
        assert {e.get("mutation_id") for e in timeline[1:]} == {mutation["mutation_id"]}
        assert trace["deliveries"][0]["status"] == "delivered"

        # Human output, found by SKU (the product's identifier) instead of the key.
        human = CliRunner().invoke(app, ["trace", f"SKU-{feed.uuid(1)}"], env=hub_env)
        assert human.exit_code == 0, human.output
        assert f"trace of {key}" in human.output
        assert 'values.name[en_US]: null → "Traced"' in human.output
        assert "http_400" in human.output and "dead letter" in human.output

        missing = CliRunner().invoke(app, ["trace", f"SKU-none-{unique}"], env=hub_env)
        assert missing.exit_code == 2 and "no entity matches" in missing.output
        set_enabled(database_url, iid, False)
    finally:
        sink.stop()
