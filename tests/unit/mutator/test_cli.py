"""`hub diff`: the mutation the hub would emit for two Akeneo payloads."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from pim_hub.cli.main import app

OLD = {
    "code": "shoes",
    "parent": "master",
    "labels": {"en_US": "Shoes", "fr_FR": "Chaussures"},
    "updated": "2024-01-01T00:00:00+00:00",
}
NEW = {
    **OLD,
    "labels": {"en_US": "Shoes", "fr_FR": "Souliers"},
    "updated": "2024-01-02T00:00:00+00:00",
}


def _files(tmp_path: Path, old: object, new: object) -> tuple[str, str]:
    a, b = tmp_path / "old.json", tmp_path / "new.json"
    a.write_bytes(orjson.dumps(old))
    b.write_bytes(orjson.dumps(new))
    return str(a), str(b)


def test_diff_prints_the_update_mutation(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["diff", *_files(tmp_path, OLD, NEW), "--entity-type", "category"]
    )
    assert result.exit_code == 0, result.output
    mutation = orjson.loads(result.stdout)
    assert mutation["operation"] == "update"
    assert mutation["entity_key"] == "category:shoes"
    assert mutation["changes"] == [
        {
            "field": "labels",
            "attribute": None,
            "locale": "fr_FR",
            "scope": None,
            "old": '"Chaussures"',
            "new": '"Souliers"',
            "added": None,
            "removed": None,
        }
    ]
    assert mutation["state"]["labels"]["fr_FR"] == "Souliers"


def test_diff_of_create_delete_and_identical_payloads(tmp_path: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(
        app, ["diff", *_files(tmp_path, None, OLD), "--entity-type", "category"]
    )
    assert orjson.loads(created.stdout)["operation"] == "create"
    deleted = runner.invoke(
        app, ["diff", *_files(tmp_path, OLD, None), "--entity-type", "category"]
    )
    assert orjson.loads(deleted.stdout)["operation"] == "delete"
    same = runner.invoke(app, ["diff", *_files(tmp_path, OLD, OLD), "--entity-type", "category"])
    assert same.exit_code == 0 and orjson.loads(same.stdout) is None


def test_diff_rejects_payloads_of_two_entities_and_invalid_ones(tmp_path: Path) -> None:
    runner = CliRunner()
    other = runner.invoke(
        app, ["diff", *_files(tmp_path, OLD, {**NEW, "code": "boots"}), "--entity-type", "category"]
    )
    assert other.exit_code == 2 and "different entities" in other.output
    bad = runner.invoke(
        app, ["diff", *_files(tmp_path, OLD, {"parent": "x"}), "--entity-type", "category"]
    )
    assert bad.exit_code == 2 and "code" in bad.output
