"""The README's commands: `hub demo` and the operator commands around it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _hub(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def test_demo_shows_a_snapshot_becoming_a_delivered_job() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "mutation  create" in out
    assert "mutation  update with 1 change(s)" in out
    assert "no-op suppressed      yes" in out
    assert "webhooks received     3" in out
    assert "demo passed" in out


def test_commands_without_a_broker_say_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "topics", "apply"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "HUB_KAFKA_BOOTSTRAP is not set" in proc.stderr


def test_topics_apply_dry_run_reports_each_topic(
    hub_env: dict[str, str], hub_settings: object
) -> None:
    proc = _hub("topics", "apply", "--dry-run", env=hub_env)
    assert proc.returncode == 0, proc.stderr
    assert "ok        hub.mutations" in proc.stdout
    assert "created" not in proc.stdout


def test_invalid_integration_config_is_refused_with_the_bad_fields(hub_env: dict[str, str]) -> None:
    proc = _hub(
        "integrations",
        "add",
        "bad-hook",
        "--driver",
        "webhook",
        "--config",
        '{"url": "not a url", "timeout_s": -1}',
        env=hub_env,
    )
    assert proc.returncode == 2
    assert "url" in proc.stderr and "timeout_s" in proc.stderr
