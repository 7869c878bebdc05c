"""SKU look-ups for Akeneo products-uuid payloads: the identifier attribute comes from the
attribute snapshots (type pim_catalog_identifier), not from the product payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.services.projections.entities import keys_by_identifier, project

pytestmark = pytest.mark.integration


def _mutation(etype: str, key: str, state: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "mutation_id": f"m-{key}-{n}",
        "entity_type": etype,
        "entity_key": key,
        "operation": "create",
        "changes": [],
        "state": orjson.dumps(state).decode(),
        "version": "2026-12-01T10:00:00+00:00",
        "created_at": datetime(2026, 12, 1, 10, n, tzinfo=UTC),
    }


def test_a_products_uuid_payload_is_found_by_its_sku(
    database_url: str, hub_env: dict[str, str], unique: str
) -> None:
    ident_attr = f"ean{unique}"  # this catalogue's identifier attribute is not called `sku`
    uuid = f"{unique[:8]}-0000-4000-8000-000000000042"
    sku = f"SKU-{unique}"
    # Akeneo's products-uuid example: no top-level identifier, no attribute_type on values.
    product = {
        "uuid": uuid,
        "enabled": True,
        "family": "shoes",
        "categories": [],
        "values": {
            ident_attr: [{"locale": None, "scope": None, "data": sku}],
            "name": [{"locale": "en_US", "scope": None, "data": sku}],  # same text, localised
        },
    }
    with psycopg.connect(database_url) as conn:
        project(conn, [_mutation("product", f"product:{uuid}", product, 1)])
        # Before the attribute is known, the SKU is not an identifier of anything.
        assert keys_by_identifier(conn, sku) == []
        attribute = {"code": ident_attr, "type": "pim_catalog_identifier", "labels": {}}
        project(conn, [_mutation("attribute", f"attribute:{ident_attr}", attribute, 2)])
        assert keys_by_identifier(conn, sku) == [f"product:{uuid}"]

    shown = CliRunner().invoke(app, ["entities", "show", sku], env=hub_env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["entity_key"] == f"product:{uuid}"

    traced = CliRunner().invoke(app, ["trace", sku, "--json"], env=hub_env)
    assert traced.exit_code == 0, traced.output
    assert json.loads(traced.stdout)["keys"] == [f"product:{uuid}"]

    missing = CliRunner().invoke(app, ["entities", "show", f"nope-{unique}"], env=hub_env)
    assert missing.exit_code == 1
