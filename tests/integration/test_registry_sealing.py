"""Integration secrets sealed at rest in the real PostgreSQL (a database of this test only)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import orjson
import psycopg
import pytest

from pim_hub.devstack import embedded as runtime
from pim_hub.drivers.discovery import discover
from pim_hub.registry.model import Integration
from pim_hub.registry.service import Registry
from pim_hub.registry.store import list_integrations
from pim_hub.runtime import db, sealing

pytestmark = pytest.mark.integration

SECRET = "whsec-" + uuid.uuid4().hex
SHOP_KEY = "shop-" + uuid.uuid4().hex


@pytest.fixture
def private_db(hub_runtime: runtime.Runtime) -> Iterator[str]:
    # Not the shared database: the shared pipeline reads every integration there, and would
    # need this test's key to open them.
    name = f"pimhub_sealing_{uuid.uuid4().hex[:8]}"
    url = runtime.create_database(hub_runtime.database.url, name)
    db.migrate(url)
    yield url
    sealing.configure(None)
    runtime.drop_database(hub_runtime.database.url, name)


def _hub(url: str, key: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_DATABASE_URL"] = url
    if key:
        env["HUB_SECRETS_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "pim_hub.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_secrets_are_sealed_in_postgresql_and_open_with_the_key(private_db: str) -> None:
    key = sealing.new_key()
    sealing.configure(key)
    registry = Registry(private_db, discover())
    registry.add(
        Integration(
            id="sealed",
            name="sealed",
            driver="webhook",
            enabled=True,
            config={
                "url": "https://hooks.example.com/in",
                "secret": SECRET,
                "headers": {"X-Shop-Key": SHOP_KEY},
            },
            entity_types=None,
            priority_map={},
        )
    )
    with psycopg.connect(private_db) as conn:
        (stored,) = conn.execute("SELECT config::text FROM integrations").fetchone() or ("",)
    assert SECRET not in stored and SHOP_KEY not in stored
    assert "hooks.example.com" in stored  # what is not secret stays readable
    # Readers with the key (the dispatcher's list_integrations) get the config as written.
    (integ,) = list_integrations(private_db)
    assert integ.config["secret"] == SECRET
    assert integ.config["headers"] == {"X-Shop-Key": SHOP_KEY}

    shown = _hub(private_db, key, "integrations", "show", "sealed")
    assert shown.returncode == 0, shown.stderr
    config = orjson.loads(shown.stdout)["config"]
    assert SECRET not in shown.stdout and SHOP_KEY not in shown.stdout
    assert config["url"] == "https://hooks.example.com/in"
    refused = _hub(private_db, None, "integrations", "show", "sealed")
    assert refused.returncode == 2
    assert "HUB_SECRETS_KEY is not set" in refused.stderr

    # Rotation: the new key first, the old one after it, then reseal; the old key can go.
    new = sealing.new_key()
    resealed = _hub(private_db, f"{new},{key}", "integrations", "reseal")
    assert resealed.returncode == 0, resealed.stderr
    assert _hub(private_db, new, "integrations", "show", "sealed").returncode == 0
    assert _hub(private_db, key, "integrations", "show", "sealed").returncode == 2
