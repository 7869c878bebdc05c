"""The README's webhook set-up, run as written, delivers to the example receiver.

The commands are read from the README's "Which dispatchers" block, not copied here, so the
README cannot drift from what works. Only the receiver's port is swapped for a free one.
The broker, the database and the mutator are the test session's (the README's earlier lines
start them: `hub up`, `hub db migrate`, `hub topics apply`, `hub mutator`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import orjson
import pytest

from pim_hub.devstack.embedded import free_port
from pim_hub.devstack.stack import wait_for
from pim_hub.devstack.supervisor import Supervisor
from tests.integration.test_replay_ops import product, version

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_webhook_block() -> list[str]:
    """The shell lines of the README's webhook integration example."""
    text = README.read_text()
    start = text.index("A webhook integration, for example")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None, "the README lost its webhook example"
    lines: list[str] = []
    for raw in block.group(1).replace("\\\n", " ").splitlines():
        line = raw.split("  #", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def _argv(words: list[str]) -> list[str]:
    if words[0] == "hub":
        return [sys.executable, "-m", "pim_hub", *words[1:]]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    raise AssertionError(f"unexpected command in the README block: {words}")


def _first_line(stream: IO[str]) -> dict[str, Any]:
    line = stream.readline()
    assert line, "the receiver exited"
    record: dict[str, Any] = json.loads(line)
    return record


def _collect(stream: IO[str], into: list[dict[str, Any]]) -> threading.Thread:
    """Read the receiver's JSON lines in a thread (a wait must not block on readline)."""

    def run() -> None:
        for line in stream:
            into.append(json.loads(line))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_readme_webhook_setup_delivers_to_the_example_receiver(
    pipeline: Supervisor,
    supervisor: Supervisor,
    hub_env: dict[str, str],
    tmp_path: Path,
    unique: str,
) -> None:
    lines = readme_webhook_block()
    assert any(line.startswith("python examples/webhook_receiver.py") for line in lines)
    assert sum(line.startswith("hub dispatcher --driver webhook") for line in lines) == 3
    port = str(free_port())
    env = {**os.environ, **hub_env, "HUB_LOG_FORMAT": "text", "HUB_LOG_LEVEL": "WARNING"}
    # The policy's default, as in a fresh shell: the README's own export must open loopback.
    env["HUB_OUTBOUND_ALLOW"] = supervisor.env["HUB_OUTBOUND_ALLOW"] = ""
    assert any(line.startswith("export HUB_OUTBOUND_ALLOW=") for line in lines)
    receiver: subprocess.Popen[str] | None = None
    outputs: dict[str, str] = {}
    try:
        for line in lines:
            background = line.endswith("&")
            words = shlex.split(line.rstrip("&").replace("8099", port))
            if words[0] == "export":
                for assignment in words[1:]:
                    name, value = assignment.split("=", 1)
                    env[name] = supervisor.env[name] = value
            elif words[0] == "python":
                assert background
                receiver = subprocess.Popen(
                    _argv(words), cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
                )
                assert receiver.stdout is not None
                assert _first_line(receiver.stdout) == {"event": "ready", "port": int(port)}
            elif background:
                supervisor.start(f"readme-{len(supervisor.services)}", *words[1:])
            else:
                done = subprocess.run(
                    _argv(words), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
                )
                assert done.returncode == 0, (line, done.stdout, done.stderr)
                outputs[line] = done.stdout
        shown = next(out for line, out in outputs.items() if "integrations show" in line)
        assert json.loads(shown)["priorities"] == ["immediate", "normal", "low"]

        # A product published by hand (checked as the mutator would) reaches the receiver.
        uuid = f"{unique[:8]}-0000-4000-8000-000000000007"
        snapshot = tmp_path / "product.json"
        snapshot.write_bytes(orjson.dumps(product(uuid, "From the README", version(8))))
        published = subprocess.run(
            [sys.executable, "-m", "pim_hub", "produce", "snapshot", str(snapshot)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert published.returncode == 0, published.stderr
        assert receiver is not None and receiver.stdout is not None
        key = f"product:{uuid}"
        # Other tests' entities may arrive too: the integration takes every product.
        seen: list[dict[str, Any]] = []
        _collect(receiver.stdout, seen)
        wait_for(
            lambda: any(e.get("entity_key") == key for e in list(seen)),
            timeout=180,
            what="the README's receiver got the product",
            supervisor=supervisor,
        )
        [applied] = [e for e in seen if e.get("entity_key") == key]
        assert applied["event"] == "applied" and applied["operation"] == "create"
        assert applied["mode"] == "live"
        names = [c for c in applied["changes"] if c["attribute"] == "name"]
        assert names and names[0]["new"] == "From the README"
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=30)
