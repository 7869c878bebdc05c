"""One set of snapshot checks: the mutator and the CLI's `snapshot_problem` refuse alike."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.processing import SnapshotProcessor, snapshot_problem

UID = "00000000-0000-4000-8000-000000000042"
OTHER = "00000000-0000-4000-8000-000000000043"
V1 = "2024-05-01T10:00:00+00:00"


def _product(uid: str = UID, updated: Any = V1) -> dict[str, Any]:
    return {"uuid": uid, "identifier": "SKU-42", "values": {}, "updated": updated}


CASES: dict[str, tuple[str, str, Any, str | None, str | None]] = {
    "valid": ("product", f"product:{UID}", _product(), V1, None),
    "a tombstone": ("product", f"product:{UID}", None, V1, None),
    "another entity's payload": ("product", f"product:{UID}", _product(OTHER), V1, "key_mismatch"),
    "a payload without identity": ("product", f"product:{UID}", {"values": {}}, V1, "invalid"),
    "a control character in the key": ("product", "product:a\x00b", None, V1, "control_character"),
    "a version that is no date": (
        "product",
        f"product:{UID}",
        _product(),
        "yesterday",
        "bad_version",
    ),
    "a version far ahead": (
        "product",
        f"product:{UID}",
        _product(),
        "9999-12-31T23:59:59+00:00",
        "version_in_future",
    ),
    "no version, an `updated` that is no date": (
        "product",
        f"product:{UID}",
        _product(updated="not-a-date"),
        None,
        "bad_version",
    ),
}


@pytest.mark.parametrize(("etype", "key", "payload", "version", "code"), CASES.values(), ids=CASES)
def test_the_mutator_and_the_cli_refuse_the_same_snapshots_for_the_same_reason(
    etype: str, key: str, payload: Any, version: str | None, code: str | None
) -> None:
    serde = Serde()
    record = snapshot_record(etype, key, None, version, "external")
    record["payload"] = orjson.dumps(payload).decode() if payload is not None else None
    outcome = SnapshotProcessor(serde).process(
        key.encode(), serde.encode("Snapshot", record), lambda _k: None
    )
    problem = snapshot_problem(etype, key, payload, version)
    if code is None:
        assert outcome.kind in ("mutation", "noop"), outcome.invalid
        assert problem is None
    else:
        assert outcome.kind == "invalid" and outcome.invalid is not None
        assert outcome.invalid.code == code
        assert problem is not None
        assert _timeless(problem) == _timeless(outcome.invalid.reason)


def _timeless(reason: str) -> str:
    # A version refused as too far ahead is told with the clock's time, read once per call.
    return re.sub(r"\d{4}-\d\d-\d\d[T ][\d:.+]+", "<time>", reason)
