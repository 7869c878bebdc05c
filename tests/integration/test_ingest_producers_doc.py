"""The example producer of docs/producers.md runs and writes snapshots the hub can read."""

from __future__ import annotations

import os
import re
import runpy
import uuid
from pathlib import Path

import orjson
import pytest

from pim_hub.runtime.settings import Settings
from pim_hub.schemas.serde import Serde
from pim_hub.schemas.topics import SNAPSHOTS
from tests.integration.test_ingest_support import read_matching

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_documented_producer_publishes_valid_snapshots(
    hub_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = (ROOT / "docs" / "producers.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S)
    assert code is not None
    script = tmp_path / "producer.py"
    script.write_text(code.group(1))
    product_uuid = str(uuid.uuid4())
    monkeypatch.setenv("HUB_KAFKA_BOOTSTRAP", hub_settings.bootstrap)
    monkeypatch.setenv("EXAMPLE_PRODUCT_UUID", product_uuid)
    monkeypatch.setenv(
        "SNAPSHOT_AVSC", str(ROOT / "src" / "pim_hub" / "schemas" / "avro" / "v1" / "snapshot.avsc")
    )
    assert os.environ["HUB_KAFKA_BOOTSTRAP"]
    runpy.run_path(str(script))
    key = f"product:{product_uuid}".encode()
    found = read_matching(hub_settings, SNAPSHOTS, lambda m: m.key() == key, 2)
    decoded = [Serde().decode("Snapshot", m.value()) for m in found]
    assert len(decoded) == 2
    assert orjson.loads(decoded[0]["payload"])["values"]["stock"][0]["data"] == 17
    assert decoded[0]["origin"] == "external" and decoded[1]["payload"] is None
