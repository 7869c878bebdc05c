"""The README's commands: `hub demo` and the operator commands around it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from pim_hub.runtime.settings import Settings

pytestmark = pytest.mark.integration


def _hub(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pim_hub", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def _count(out: str, label: str) -> int:
    match = re.search(rf"^{re.escape(label)}\s+(\d+)", out, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{out[-3000:]}"
    return int(match.group(1))


def test_demo_syncs_the_catalogue_into_magento_with_edits_a_deletion_and_a_retry() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pim_hub", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    # The full sync: 300 products plus their configurable parents reach Magento.
    assert re.search(r"magento +\d+ products \(300 Akeneo products \+ \d+ configurables\)", out)
    assert "3 names updated" in out
    assert "SKU-0000003 deleted" in out
    assert re.search(r"503 → hub\.jobs\.retry\.1s → delivered on attempt [2-9]", out)
    # The summary: every stage counted, nothing dead, Magento equal to what Akeneo maps to.
    assert _count(out, "raw events (pim.raw-events)") == 5  # 3 edits, 1 deletion, 1 retried edit
    # The sync's snapshots go to the bulk topic, the webhooks' to the live one.
    assert _count(out, "bulk snapshots (pim.snapshots.bulk)") >= 300
    assert _count(out, "live snapshots (pim.snapshots)") >= 5
    assert _count(out, "mutations (hub.mutations)") >= 300 + 5
    jobs = _count(out, "jobs (hub.jobs.*)")
    delivered = _count(out, "delivered")
    assert delivered + _count(out, "skipped (nothing to send)") == jobs
    assert _count(out, "needed more than one attempt") >= 1
    assert _count(out, "dead") == 0
    assert re.search(r"magento products +(\d+)  \(expected from Akeneo: \1, equal\)", out)
    assert re.search(r"webhook → delivered latency +p50 \d+ ms", out)
    assert out.count("/metrics (") == 8  # every service (fan-out its own) serves its metrics
    assert "demo passed" in out
    assert elapsed < 120, f"the demo took {elapsed:.0f} s"


def test_commands_without_a_broker_say_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pim_hub", "topics", "apply"],
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
    summary = proc.stdout.splitlines()[-1]
    assert re.fullmatch(
        r"(\d+) topics: 0 to create, 0 with drift, \1 as in the catalogue "
        r"\(dry run: nothing changed\)",
        summary,
    ), summary


def test_topics_apply_reports_each_topic_as_the_broker_answers(
    hub_env: dict[str, str], hub_settings: Settings
) -> None:
    import uuid

    from pim_hub.runtime.kafka import apply_topics
    from pim_hub.schemas.topics import TopicSpec

    class Steps:
        def __init__(self) -> None:
            self.total, self.done = 0, 0
            self.said: list[str] = []

        def start(self, total: int) -> None:
            self.total = total

        def advance(self, n: int) -> None:
            self.done += n

        def describe(self, text: str) -> None:
            self.said.append(text)

    prefix = f"test.topics-apply.{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}.{i}" for i in range(3)]
    specs = [TopicSpec(name, 1, 3_600_000) for name in names]
    first, steps = apply_topics(hub_settings, specs, progress=Steps()), Steps()
    assert sorted(first.created) == names
    assert first.summary() == (
        "3 topics: 3 created, 0 updated, 0 with drift left as it is, 0 as in the catalogue"
    )
    again = apply_topics(hub_settings, specs, progress=steps)
    assert again.created == [] and sorted(again.unchanged) == names
    assert (steps.total, steps.done) == (3, 3)
    assert [t for t in steps.said if t.startswith("checked ")] == [f"checked {n}" for n in names]

    # The command: a line per catalogue topic, then the summary; the bar stays off stdout.
    proc = _hub("topics", "apply", env=hub_env)
    assert proc.returncode == 0, proc.stderr
    *lines, summary = proc.stdout.splitlines()
    assert all(line.startswith(("ok ", "created ", "updated ", "drift ")) for line in lines)
    assert summary.startswith(f"{len(lines)} topics: ")
    quiet = _hub("topics", "apply", "--no-progress", env=hub_env)
    assert quiet.returncode == 0 and quiet.stdout.splitlines()[-1] == summary


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
