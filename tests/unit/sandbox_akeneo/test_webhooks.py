"""Webhook emitters: payload shapes and signatures checked by an independent HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import orjson
import pytest
import yaml

from pim_hub.sandbox.akeneo.catalogue import Catalogue, Change
from pim_hub.sandbox.akeneo.webhooks import (
    cloud_event,
    event_platform_webhook,
    legacy_webhook,
    post_webhook,
)
from tests.spec_validation import SPECS_DIR, validate_schema

EVENTS_DIR = SPECS_DIR / "akeneo" / "events-serenity"


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@pytest.fixture
def changes() -> list[Change]:
    cat = Catalogue(60, seed=8)
    products = list(cat.iter_products())
    variant = next(p for p in products if p["parent"])
    return [
        cat.update_product(
            products[0]["uuid"],
            values={"name": [{"locale": "de_DE", "scope": None, "data": "Neu"}]},
        ),
        cat.create_product(family="toys"),
        cat.delete_product(products[1]["uuid"], author="hub_connection", author_type="api"),
        cat.update_product_model(
            "_".join(variant["parent"].split("_")[:2]),
            values={"name": [{"locale": "en_US", "scope": None, "data": "M"}]},
        ),
    ]


def test_legacy_signature_is_hmac_of_timestamp_dot_body(changes: list[Change]) -> None:
    hook = legacy_webhook(changes, secret="topsecret", timestamp=1_700_000_000)
    assert hook.headers["X-Akeneo-Request-Timestamp"] == "1700000000"
    expected = _hmac("topsecret", b"1700000000." + hook.body)
    assert hook.headers["X-Akeneo-Request-Signature"] == expected
    assert hook.headers["X-Akeneo-Request-Signature"] != _hmac("other", b"1700000000." + hook.body)


def test_legacy_body_follows_the_serenity_event_schemas(changes: list[Change]) -> None:
    body = json.loads(legacy_webhook(changes, secret="s").body)
    actions = [e["action"] for e in body["events"]]
    assert actions == [
        "product.updated",
        "product.created",
        "product.removed",
        "product_model.updated",
    ]
    files = {
        "product.updated": "product-updated.yml",
        "product.created": "product-created.yml",
        "product.removed": "product-removed.yml",
        "product_model.updated": "product-model-updated.yml",
    }
    for event in body["events"]:
        schema = yaml.safe_load((EVENTS_DIR / files[event["action"]]).read_text())
        validate_schema(schema, {"events": [event]}, any_type_properties={"data"})
    assert body["events"][2]["data"]["resource"] == {
        "identifier": changes[2].identifier,
        "uuid": changes[2].key,
    }
    assert body["events"][2]["author_type"] == "api"
    assert len({e["event_id"] for e in body["events"]}) == 4


def test_legacy_batches_are_limited_to_ten_events(changes: list[Change]) -> None:
    with pytest.raises(ValueError, match="1 to 10"):
        legacy_webhook(changes * 3, secret="s")


def test_event_platform_signatures_cover_the_raw_body(changes: list[Change]) -> None:
    hook = event_platform_webhook(changes[0], primary_secret="p" * 16, secondary_secret="q" * 16)
    assert hook.headers["X-AKENEO-SIGNATURE-PRIMARY"] == _hmac("p" * 16, hook.body)
    assert hook.headers["X-AKENEO-SIGNATURE-SECONDARY"] == _hmac("q" * 16, hook.body)
    assert hook.headers["X-AKENEO-SIGNATURE-ALGORITHM"] == "HmacSHA256"
    single = event_platform_webhook(changes[0], primary_secret="p" * 16)
    assert "X-AKENEO-SIGNATURE-SECONDARY" not in single.headers


def test_cloud_events_are_notify_only_with_author(changes: list[Change]) -> None:
    updated = cloud_event(changes[0], subscription_id="sub-1")
    assert {k: updated[k] for k in ("specversion", "type", "subject", "datacontenttype")} == {
        "specversion": "1.0",
        "type": "com.akeneo.pim.v1.product.updated",
        "subject": "sub-1",
        "datacontenttype": "application/json",
    }
    assert updated["data"]["product"] == {"uuid": changes[0].key}
    assert updated["data"]["author"]["type"] == "user"
    assert updated["time"].endswith("Z")
    deleted = cloud_event(changes[2], subscription_id="s", send_product_identifier=True)
    assert deleted["type"] == "com.akeneo.pim.v1.product.deleted"
    assert deleted["data"]["product"]["identifier"] == changes[2].identifier
    assert deleted["data"]["author"] == {"identifier": "hub_connection", "type": "api"}
    model = cloud_event(changes[3], subscription_id="s")
    assert model["type"] == "com.akeneo.pim.v1.product-model.updated"
    assert model["data"]["product_model"] == {"code": changes[3].key}


def test_delta_events_carry_the_field_level_changes(changes: list[Change]) -> None:
    event = cloud_event(changes[0], subscription_id="s", delta=True)
    assert event["type"] == "com.akeneo.pim.v1.product.updated.delta"
    diff = event["data"]["product"]["changes"]["values"]["name"]
    assert changes[0].before is not None
    previous = next(
        e["data"] for e in changes[0].before["values"]["name"] if e["locale"] == "de_DE"
    )
    assert diff == [
        {
            "previous": previous,
            "new": "Neu",
            "type": "pim_catalog_text",
            "locale": "de_DE",
            "scope": None,
        }
    ]
    assert set(event["data"]["product"]["updated_at"]) == {"date", "timezone"}


def test_post_webhook_sends_the_signed_bytes_unchanged(changes: list[Change]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    hook = event_platform_webhook(changes[1], primary_secret="k" * 16)
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        response = post_webhook("https://hub.test/webhooks/event-platform", hook, client=client)
    assert response.status_code == 200
    assert seen[0].content == hook.body
    assert seen[0].headers["X-AKENEO-SIGNATURE-PRIMARY"] == _hmac("k" * 16, seen[0].content)
    assert orjson.loads(seen[0].content)["type"] == "com.akeneo.pim.v1.product.created"
