"""docs/asyncapi.yaml: generated from the topic catalogue, up to date, a valid AsyncAPI 3.0."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import fastavro
import jsonschema
import yaml

from pim_hub.schemas.contracts import contract
from pim_hub.schemas.serde import current
from pim_hub.schemas.topics import catalogue

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "asyncapi_generate", ROOT / "infra" / "asyncapi" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_document_is_up_to_date() -> None:
    assert generator().main(["--check"]) == 0, "run python infra/asyncapi/generate.py"


def test_the_document_is_valid_asyncapi_3() -> None:
    document = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    validator = jsonschema.Draft7Validator(json.loads(SPEC.read_text()))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def test_every_topic_is_a_channel_with_its_schema() -> None:
    document = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    by_address = {c["address"]: c for c in document["channels"].values()}
    for spec in catalogue():
        channel = by_address[spec.name]
        assert channel["bindings"]["kafka"]["partitions"] == spec.partitions
        value = contract(spec.name).value
        assert list(channel["messages"]) == [value]
        if contract(spec.name).avro:
            payload = document["components"]["messages"][value]["payload"]
            assert payload["schema"] == current(value).raw
            fastavro.parse_schema(payload["schema"])  # a complete, parseable Avro schema
    # Every channel is written and read by someone.
    actions = {(op["channel"]["$ref"], op["action"]) for op in document["operations"].values()}
    for cid in document["channels"]:
        assert {(f"#/channels/{cid}", "send"), (f"#/channels/{cid}", "receive")} <= actions
