"""End to end: Akeneo sandbox catalogue -> snapshots -> running hub -> Magento sandbox.

A checker compares the whole Magento state with what the Akeneo state maps to, after the full
load, after edits and deletions, and after injected failures (5xx, 429, revoked tokens).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pim_hub.devstack.demo import ATTRIBUTE_SEEDS, MULTIS, SELECTS, VIEWS, magento_config
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.drivers.discovery import discover
from pim_hub.registry.model import Integration
from pim_hub.registry.service import upsert_integration
from pim_hub.runtime.kafka import make_producer
from pim_hub.runtime.settings import Settings
from pim_hub.sandbox.akeneo import Catalogue
from pim_hub.sandbox.magento import (
    FaultConfig,
    MagentoState,
    SandboxConfig,
    create_app,
    running_server,
)
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde

pytestmark = pytest.mark.integration

PRODUCTS = int(os.environ.get("M2_E2E_PRODUCTS", "1000"))


class Tagged:
    """Makes the catalogue's codes unique to this test (the mutator state is shared)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def code(self, code: str | None) -> str | None:
        return f"{code}_{self.tag}" if code else code

    def product(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            **p,
            "categories": [self.code(c) for c in p["categories"]],
            "parent": self.code(p["parent"]),
        }

    def model(self, m: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.product(m),
            "code": self.code(m["code"]),
            "family_variant": self.code(m["family_variant"]),
        }

    def category(self, c: dict[str, Any]) -> dict[str, Any]:
        return {**c, "code": self.code(c["code"]), "parent": self.code(c["parent"])}


class Publisher:
    """Publishes snapshots straight to pim.snapshots (one flush per batch)."""

    def __init__(self, settings: Settings) -> None:
        self.producer = make_producer(settings)
        self.serde = Serde(settings.registry_config())

    def publish(self, items: list[tuple[str, str, dict[str, Any] | None, str | None]]) -> None:
        from pim_hub.schemas.records import snapshot_record

        for etype, key, payload, version in items:
            record = snapshot_record(etype, key, payload, version, "external")
            value = self.serde.encode("Snapshot", record, topic=topics.SNAPSHOTS)
            self.producer.produce(topics.SNAPSHOTS, value=value, key=key)
            self.producer.poll(0)
        assert self.producer.flush(30) == 0


def snapshots(
    cat: Catalogue, t: Tagged
) -> list[tuple[str, str, dict[str, Any] | None, str | None]]:
    """Every entity of the catalogue: categories, variants, models (roots first), products."""
    out: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
    for c in cat.categories:
        tc = t.category(c)
        out.append(("category", f"category:{tc['code']}", tc, c["updated"]))
    for variants in cat.family_variants.values():
        for v in variants:
            tv = {**v, "code": t.code(v["code"])}
            out.append(("family_variant", f"family_variant:{tv['code']}", tv, None))
    models = [cat.get_product_model(c) for c in cat.iter_model_codes()]
    for m in sorted((m for m in models if m), key=lambda m: m["parent"] is not None):
        tm = t.model(m)
        out.append(("product_model", f"product_model:{tm['code']}", tm, m["updated"]))
    for p in cat.iter_products():
        out.append(("product", f"product:{p['uuid']}", t.product(p), p["updated"]))
    return out


def _pick(items: list[dict[str, Any]], locale: str | None, scope: str | None) -> Any:
    for item in items:
        if item.get("locale") in (None, locale) and item.get("scope") in (None, scope):
            return item.get("data")
    return None


def expected(cat: Catalogue, t: Tagged) -> dict[str, Any]:
    """What Magento should hold for the catalogue, in the checker's projection.

    Select values stay ("option", attribute, codes) until `resolve` looks up their ids.
    """
    out: dict[str, Any] = {}

    def project(entity: dict[str, Any], sku: str, configurable: bool) -> dict[str, Any]:
        values = entity["values"]
        admin: dict[str, Any] = {
            "status": 1 if configurable or entity.get("enabled", True) else 2,
            "visibility": 1 if not configurable and entity.get("parent") else 4,
        }
        name = _pick(values.get("name", []), "en_US", "ecommerce")
        if name:
            admin["name"] = name
        desc = _pick(values.get("description", []), "en_US", "ecommerce")
        if desc:
            admin["description"] = desc
        price = _pick(values.get("price", []), None, None)
        eur = [float(p["amount"]) for p in price or [] if p["currency"] == "EUR"]
        if eur:
            admin["price"] = round(eur[0], 4)
        weight = _pick(values.get("weight", []), None, None)
        if weight:
            factor = {"KILOGRAM": 1, "GRAM": 0.001}[weight["unit"]]
            admin["weight"] = round(float(weight["amount"]) * factor, 4)
        for code in (*SELECTS, *MULTIS):
            data = _pick(values.get(code, []), None, None)
            if data:
                admin[code] = ("option", code, tuple(data) if isinstance(data, list) else (data,))
        flag = _pick(values.get("is_new", []), None, None)
        if flag is not None:
            admin["is_new"] = "1" if flag else "0"
        stores = {}
        for view, locale in VIEWS.items():
            store = {}
            for attr in ("name", "description"):
                data = _pick(values.get(attr, []), locale, "ecommerce")
                if data:
                    store[attr] = data
            stores[view] = store
        cats = sorted(str(t.code(c)) for c in entity.get("categories") or [])
        return {"admin": admin, "stores": stores, "categories": cats}

    children: dict[str, list[str]] = {}
    for p in cat.iter_products():
        sku = p["values"]["sku"][0]["data"]
        out[sku] = project(p, sku, False)
        if p["parent"]:
            root = "_".join(p["parent"].split("_")[:2])
            children.setdefault(root, []).append(sku)
    for code in cat.iter_model_codes():
        m = cat.get_product_model(code)
        if m and m["parent"] is None:
            sku = str(t.code(code))
            item = project(m, sku, True)
            item["children"] = sorted(children.get(code, []))
            out[sku] = item
    return out


def resolve(want: dict[str, Any], state: MagentoState) -> dict[str, Any]:
    """Replace symbolic options by the ids Magento gave them."""
    ids = {
        code: {label: oid for oid, label in options.items()}
        for code, options in state.snapshot()["attribute_options"].items()
    }
    out = {}
    for sku, item in want.items():
        admin = dict(item["admin"])
        for key, value in admin.items():
            if isinstance(value, tuple) and value[0] == "option":
                found = [ids.get(value[1], {}).get(c) for c in value[2]]
                admin[key] = ",".join(sorted(str(f) for f in found))
        out[sku] = {**item, "admin": admin}
    return out


def actual(state: MagentoState) -> dict[str, Any]:
    """The Magento sandbox state in the checker's projection."""
    snap = state.snapshot()
    url_keys = {
        cid: c["values"].get("admin", {}).get("url_key") for cid, c in snap["categories"].items()
    }
    out: dict[str, Any] = {}
    keep = {
        "status",
        "visibility",
        "name",
        "description",
        "price",
        "weight",
        "is_new",
        *SELECTS,
        *MULTIS,
    }
    for sku, p in snap["products"].items():
        admin = {k: v for k, v in p["values"].get("admin", {}).items() if k in keep and v != ""}
        for code in MULTIS:
            if code in admin:
                admin[code] = ",".join(sorted(admin[code].split(",")))
        stores = {}
        for view in VIEWS:
            merged = {**p["values"].get("admin", {}), **p["values"].get(view, {})}
            stores[view] = {k: merged[k] for k in ("name", "description") if merged.get(k)}
        item: dict[str, Any] = {
            "admin": admin,
            "stores": stores,
            "categories": sorted(
                str(url_keys[int(link["category_id"])]).replace("-", "_")
                for link in p["category_links"]
            ),
        }
        if p["type_id"] == "configurable":
            item["children"] = sorted(p["children"])
        out[sku] = item
    return out


def diff(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    problems = [f"missing {s}" for s in sorted(set(want) - set(got))]
    problems += [f"unexpected {s}" for s in sorted(set(got) - set(want))]
    for sku in sorted(set(want) & set(got)):
        if want[sku] != got[sku]:
            keys = [k for k in want[sku] if want[sku][k] != got[sku].get(k)]
            problems.append(
                f"{sku}: {keys} want {[want[sku][k] for k in keys]} "
                f"got {[got[sku].get(k) for k in keys]}"
            )
    return problems


def converge(
    cat: Catalogue, t: Tagged, state: MagentoState, sup: Supervisor, timeout: float = 120.0
) -> None:
    deadline = time.monotonic() + timeout
    problems: list[str] = []
    want = expected(cat, t)
    while time.monotonic() < deadline:
        problems = diff(resolve(want, state), actual(state))
        if not problems:
            return
        sup.check()
        time.sleep(2.0)
    routes = sorted(state.stats.by_route.items(), key=lambda kv: -kv[1])[:12]
    raise AssertionError(
        f"{len(problems)} differences, e.g.:\n" + "\n".join(problems[:15]) + f"\ncalls: {routes}"
    )


@pytest.fixture
def magento() -> Iterator[tuple[str, Any]]:
    state = MagentoState(SandboxConfig(attributes=ATTRIBUTE_SEEDS))
    app = create_app(state)
    with running_server(app) as url:
        yield url, app


def test_catalogue_converges_in_magento_through_failures(
    pipeline: Supervisor,
    supervisor: Supervisor,
    hub_settings: Settings,
    database_url: str,
    magento: tuple[str, Any],
    unique: str,
) -> None:
    url, app = magento
    state: MagentoState = app.state.magento
    integration = Integration(
        id=f"m2-{unique}",
        name="Magento e2e",
        driver="magento2",
        enabled=True,
        config=magento_config(url),
        entity_types=None,
        priority_map={},
    )
    upsert_integration(database_url, discover(), integration)
    # Categories, models and variants race across priorities; a roomy retry budget lets
    # "not synced yet" references converge on a loaded machine instead of dead-lettering.
    supervisor.env["HUB_DISPATCHER_MAX_ATTEMPTS"] = "40"
    for priority in topics.PRIORITIES:
        supervisor.start(
            f"m2-{priority}", "dispatcher", "--driver", "magento2", "--priority", priority
        )
    time.sleep(2.5)  # the mutator reloads integrations every second; dispatchers join groups

    cat = Catalogue(products=PRODUCTS, seed=int(unique[:6], 16))
    tag = Tagged(unique)
    publisher = Publisher(hub_settings)

    # 1. Full load.
    publisher.publish(snapshots(cat, tag))
    converge(cat, tag, state, supervisor, timeout=240)
    assert len(state.products) > PRODUCTS  # products plus configurables

    # 2. Edits and deletions.
    rng = random.Random(7)
    deleted = []
    for _ in range(40):
        change = cat.random_edit(rng)
        if change.action == "removed":
            deleted.append(change.key)
    publisher.publish([("product", f"product:{k}", None, None) for k in deleted])
    publisher.publish(snapshots(cat, tag))
    converge(cat, tag, state, supervisor)

    # 3. Injected failures: 5xx and 429 on a share of calls, and revoked admin tokens.
    app.state.faults.config = FaultConfig(
        error_rate=0.1, rate_limit_rate=0.05, retry_after=1, seed=3
    )
    state.revoke_tokens()
    for _ in range(30):
        cat.random_edit(rng)
    deleted = [
        k
        for k in (cat.product_uuid(n) for n in range(cat.next_index))
        if cat.product_index(k) is None
    ]
    publisher.publish([("product", f"product:{k}", None, None) for k in deleted])
    publisher.publish(snapshots(cat, tag))
    converge(cat, tag, state, supervisor)
    assert app.state.faults.injected > 0
    app.state.faults.config = FaultConfig()
