"""Event planning: what each Akeneo event type becomes."""

from __future__ import annotations

from typing import Any

import pytest

from pim_hub.services.ingest.events import InvalidEvent, plan_cloud_event, plan_legacy, plan_raw


def ce(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "pim",
        "type": f"com.akeneo.pim.v1.{event_type}",
        "time": "2024-05-02T10:11:12Z",
        "data": {**data, "author": {"identifier": "julia", "type": "user"}},
    }


U = "0b6d4a3c-1111-4d6e-8f00-000000000001"


@pytest.mark.parametrize(
    ("event_type", "data", "action", "key"),
    [
        ("product.created", {"product": {"uuid": U}}, "fetch", f"product:{U}"),
        ("product.updated", {"product": {"uuid": U}}, "fetch", f"product:{U}"),
        ("product.deleted", {"product": {"uuid": U}}, "tombstone", f"product:{U}"),
        ("product-model.updated", {"product_model": {"code": "m1"}}, "fetch", "product_model:m1"),
        ("product-model.updated", {"product": {"code": "m1"}}, "fetch", "product_model:m1"),
        (
            "product-model.deleted",
            {"product_model": {"code": "m1"}},
            "tombstone",
            "product_model:m1",
        ),
        ("category.created", {"category": {"code": "shoes"}}, "fetch", "category:shoes"),
        ("family.updated", {"family": {"code": "f"}}, "fetch", "family:f"),
        ("attribute.deleted", {"attribute": {"code": "color"}}, "tombstone", "attribute:color"),
        (
            "attribute-option.updated",
            {"attribute_option": {"code": "red", "attribute": {"code": "color"}}},
            "fetch",
            "attribute_option:color.red",
        ),
        (
            "family-variant.updated",
            {"family_variant": {"code": "v", "family": {"code": "f"}}},
            "fetch",
            "family_variant:v",
        ),
        ("family-variant.updated", {"family_variant": {"code": "v"}}, "ignore", None),
        ("product.became-complete", {"product": {"uuid": U}}, "ignore", None),
        ("asset.updated", {}, "ignore", None),
    ],
)
def test_event_platform_types(event_type, data, action, key):
    plan = plan_cloud_event(ce(event_type, data))
    assert (plan.action, plan.entity_key) == (action, key)


def test_delta_passes_changes_and_its_updated_at() -> None:
    changes = {"enabled": {"previous": True, "new": False}}
    plan = plan_cloud_event(
        ce(
            "product.updated.delta",
            {
                "product": {
                    "uuid": U,
                    "updated_at": {"date": "2024-05-02 10:11:12.000000", "timezone": "UTC"},
                    "changes": changes,
                }
            },
        )
    )
    assert plan.action == "delta" and plan.delta == changes
    assert plan.version == "2024-05-02T10:11:12+00:00"


def test_delta_without_changes_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match="changes"):
        plan_cloud_event(ce("product.updated.delta", {"product": {"uuid": U}}))


def legacy(action: str, resource: dict[str, Any], author: str = "julia") -> dict[str, Any]:
    return {
        "action": action,
        "event_id": "e1",
        "event_datetime": "2024-01-01T00:00:00+00:00",
        "author": author,
        "author_type": "ui",
        "pim_source": "x",
        "data": {"resource": resource},
    }


def test_legacy_product_is_normalised_to_the_rest_shape() -> None:
    resource = {
        "uuid": U,
        "identifier": "SKU1",
        "values": {},
        "updated": "2024-01-02T00:00:00+00:00",
        "_links": {},
    }
    plan = plan_legacy(legacy("product.updated", resource))
    assert plan.action == "snapshot" and plan.entity_key == f"product:{U}"
    assert plan.payload == {"uuid": U, "values": {}, "updated": "2024-01-02T00:00:00+00:00"}
    assert plan.version == "2024-01-02T00:00:00+00:00"


def test_legacy_removals_are_tombstones() -> None:
    assert (
        plan_legacy(legacy("product.removed", {"uuid": U, "identifier": "S"})).action == "tombstone"
    )
    plan = plan_legacy(legacy("product_model.removed", {"code": "m"}))
    assert (plan.action, plan.entity_key) == ("tombstone", "product_model:m")


def test_raw_records_without_hub_headers_are_recognised() -> None:
    # Akeneo's Kafka destination writes bare CloudEvents.
    plan = plan_raw(None, ce("product.updated", {"product": {"uuid": U}}))
    assert plan.action == "fetch"
    assert plan_raw(None, legacy("product_model.removed", {"code": "m"})).action == "tombstone"


def test_own_connection_is_ignored_in_both_formats() -> None:
    own = frozenset({"hub_user", "hub-client"})
    assert plan_legacy(legacy("product.updated", {"uuid": U}, "hub_user"), own).action == "ignore"
    event = ce("product.updated", {"product": {"uuid": U}})
    event["data"]["author"] = {"identifier": "hub-client", "type": "api"}
    assert plan_cloud_event(event, own).action == "ignore"
