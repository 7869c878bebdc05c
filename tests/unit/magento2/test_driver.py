"""Magento 2 driver against the in-process Magento sandbox (which validates every request)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from pim_hub.drivers.base import IntegrationContext
from pim_hub.drivers.magento2 import Magento2Driver, lookups
from pim_hub.drivers.magento2.keys import M_CATEGORY, M_LINKED, M_MODEL, M_OPTION, M_TYPE
from pim_hub.sandbox.magento import SandboxConfig
from tests.spec_validation import SwaggerDocument
from tests.unit.magento2.helpers import (
    SEEDS,
    Harness,
    MemoryMapping,
    Mutations,
    config_dict,
    make_harness,
    product,
    validate_sent,
)

pytestmark = pytest.mark.anyio


def _model(code: str) -> dict[str, Any]:
    return {
        "code": code,
        "family": "clothing",
        "family_variant": "clothing_size",
        "parent": None,
        "categories": [],
        "values": {"name": [{"locale": "en_US", "scope": None, "data": f"Tee {code}"}]},
    }


def _variant(
    sku: str, parent: str, size: str, categories: tuple[str, ...] = ("shirts",)
) -> dict[str, Any]:
    child = product(sku, parent=parent, categories=list(categories))
    child["values"]["size"] = [{"locale": None, "scope": None, "data": size}]
    return child


async def _open_bulk(
    h: Harness, mapping: MemoryMapping | None = None
) -> tuple[IntegrationContext, Magento2Driver]:
    """The driver opened in async bulk mode, polling bulk statuses every 10 ms."""
    ctx = h.context(config_dict(bulk="async", bulk_poll_interval_s=0.01), mapping)
    driver = Magento2Driver()
    await driver.open(ctx)
    return ctx, driver


def _family(mutations: Mutations, code: str, sku_prefix: str) -> list[Any]:
    """A model's job, then the jobs of its variants in sizes s and m (in no category)."""
    jobs = [mutations.job("product_model", _model(code))]
    for size in ("s", "m"):
        jobs.append(mutations.job("product", _variant(f"{sku_prefix}{size}", code, size, ())))
    return jobs


async def deliver(
    h: Harness,
    jobs: Any,
    config: dict[str, Any] | None = None,
    mapping: MemoryMapping | None = None,
) -> tuple[list[Any], MemoryMapping]:
    mapping = mapping or MemoryMapping()
    ctx = h.context(config, mapping)
    driver = Magento2Driver()
    await driver.open(ctx)
    results = [await driver.handle(job, ctx) for job in jobs]
    return results, mapping


async def test_new_product_lands_with_global_and_store_view_values(
    harness: Harness, mutations: Mutations, magento_doc: SwaggerDocument
) -> None:
    job = mutations.job("product", product("SKU-1"))
    [result], mapping = await deliver(harness, [job])
    assert result.outcome == "delivered", result
    values = harness.state.product_values("SKU-1")
    admin = values["admin"]
    assert admin["name"] == "Shirt SKU-1"
    assert admin["price"] == 19.9
    assert admin["weight"] == 1.5  # 1500 GRAM in kgs
    assert admin["status"] == 1 and admin["visibility"] == 4
    assert admin["is_new"] == "1" and admin["release_date"] == "2024-03-01"
    assert admin["rating"] == "4.5"
    assert admin["description"] == "<p>Nice</p>"  # en_US + ecommerce, not mobile
    red = harness.state.option_id("color", "red")
    assert red is not None and admin["color"] == red
    material = {harness.state.option_id("material", c) for c in ("cotton", "wool")}
    assert set(admin["material"].split(",")) == material
    # Each store view got only its own localised values; `default` (en_US, like the admin
    # values) inherits them and got no request at all.
    assert values["fr"] == {"name": "Chemise SKU-1", "description": "<p>Belle</p>"}
    assert values["de"] == {"name": "Hemd SKU-1"}
    assert "default" not in values
    assert harness.state.product_view("SKU-1", "default")["name"] == "Shirt SKU-1"
    assert not [c for c in harness.sent if c[1].startswith("/rest/default/")]
    snap = harness.state.snapshot()["products"]["SKU-1"]
    assert snap["attribute_set_id"] == 9 and snap["website_ids"] == [1]
    assert ("attribute_option", "color.red") in mapping.rows
    assert validate_sent(magento_doc, harness.sent) >= 5


async def test_update_sends_only_changed_fields_to_their_scopes(
    harness: Harness, mutations: Mutations, magento_doc: SwaggerDocument
) -> None:
    body = product("SKU-2")
    first = mutations.job("product", body)
    changed = copy.deepcopy(body)
    changed["values"]["name"][1]["data"] = "Chemise neuve"
    changed["values"]["price"][0]["data"][0]["amount"] = "25.00"
    second = mutations.job("product", changed)
    assert second is not None and second.mutation.operation == "update"
    mapping = MemoryMapping()
    await deliver(harness, [first], mapping=mapping)
    harness.sent.clear()
    [result], _ = await deliver(harness, [second], mapping=mapping)
    assert result.outcome == "delivered", result
    puts = harness.calls("PUT")
    bodies = {path: b["product"] for _, path, b in puts}
    assert bodies["/rest/all/V1/products/SKU-2"] == {"sku": "SKU-2", "price": 25.0}
    assert bodies["/rest/fr/V1/products/SKU-2"] == {"sku": "SKU-2", "name": "Chemise neuve"}
    assert len(puts) == 2
    values = harness.state.product_values("SKU-2")
    assert values["fr"]["name"] == "Chemise neuve" and values["admin"]["price"] == 25.0
    assert values["de"] == {"name": "Hemd SKU-2"}
    validate_sent(magento_doc, harness.sent)


async def test_removed_value_is_cleared(harness: Harness, mutations: Mutations) -> None:
    body = product("SKU-3")
    first = mutations.job("product", body)
    changed = copy.deepcopy(body)
    del changed["values"]["rating"]
    second = mutations.job("product", changed)
    mapping = MemoryMapping()
    await deliver(harness, [first, second], mapping=mapping)
    assert harness.state.product_values("SKU-3")["admin"]["rating"] == ""


async def test_same_job_twice_leaves_the_same_state(harness: Harness, mutations: Mutations) -> None:
    job = mutations.job("product", product("SKU-4", categories=[]))
    mapping = MemoryMapping()
    await deliver(harness, [job], mapping=mapping)
    before = harness.state.snapshot()
    results, _ = await deliver(harness, [job], mapping=mapping)
    after = harness.state.snapshot()
    assert results[0].outcome == "delivered"
    for part in ("products", "categories", "attribute_options"):
        for p in after[part].values() if part == "products" else ():
            p.pop("updated_at", None)
        assert after[part] == before[part]


async def test_missing_option_is_created_once_even_across_jobs(
    harness: Harness, mutations: Mutations
) -> None:
    mapping = MemoryMapping()
    jobs = [mutations.job("product", product(f"SKU-O{i}")) for i in range(3)]
    await deliver(harness, jobs, mapping=mapping)
    posts = harness.calls("POST", "/options")
    labels = [b["option"]["label"] for _, p, b in posts if "/attributes/color/" in p]
    assert labels == ["red"]
    assert all(b["option"]["value"] == "" for _, _, b in posts)


async def test_existing_option_is_adopted_not_duplicated(
    harness: Harness, mutations: Mutations
) -> None:
    harness.state.add_option("color", {"label": "red"})
    await deliver(harness, [mutations.job("product", product("SKU-5"))])
    assert not [c for c in harness.calls("POST", "/attributes/color/options")]
    assert harness.state.product_values("SKU-5")["admin"]["color"] == harness.state.option_id(
        "color", "red"
    )


async def test_category_tree_create_labels_move_and_links(
    harness: Harness, mutations: Mutations, magento_doc: SwaggerDocument
) -> None:
    mapping = MemoryMapping()
    labels = {"en_US": "Men", "fr_FR": "Hommes", "de_DE": "Herren"}
    jobs = [
        mutations.job("category", {"code": "master", "parent": None, "labels": {}}),
        mutations.job(
            "category", {"code": "apparel", "parent": "master", "labels": {"en_US": "Apparel"}}
        ),
        mutations.job("category", {"code": "men", "parent": "apparel", "labels": labels}),
    ]
    results, _ = await deliver(harness, jobs, mapping=mapping)
    assert [r.outcome for r in results] == ["delivered"] * 3
    men_id = int(mapping.rows[("category", "men")])
    apparel_id = int(mapping.rows[("category", "apparel")])
    cats = harness.state.snapshot()["categories"]
    assert cats[men_id]["parent_id"] == apparel_id and cats[apparel_id]["parent_id"] == 2
    assert cats[men_id]["values"]["fr"] == {"name": "Hommes"}
    assert cats[men_id]["values"]["admin"]["name"] == "Men"
    # Move: men goes under the root.
    move = mutations.job("category", {"code": "men", "parent": "master", "labels": labels})
    [moved], _ = await deliver(harness, [move], mapping=mapping)
    assert moved.outcome == "delivered"
    assert harness.state.snapshot()["categories"][men_id]["parent_id"] == 2
    # A product in "men" links to it.
    await deliver(
        harness, [mutations.job("product", product("SKU-C", categories=["men"]))], mapping=mapping
    )
    links = harness.state.snapshot()["products"]["SKU-C"]["category_links"]
    assert links == [{"position": 0, "category_id": str(men_id)}]
    validate_sent(magento_doc, harness.sent)


class SlowCategoryMapping(MemoryMapping):
    """Records a category's id only after `delay` seconds: a delivery that takes long (a busy
    target), or, with `fail`, one that fails before it records anything."""

    def __init__(self, slow: str, delay: float, fail: bool = False) -> None:
        super().__init__()
        self.slow, self.delay, self.fail = slow, delay, fail

    async def put(self, entity_type: str, source_key: str, target_id: str) -> None:
        if (entity_type, source_key) == (M_CATEGORY, self.slow):
            await asyncio.sleep(self.delay)
            if self.fail:
                raise RuntimeError("the mapping service went away")
        await super().put(entity_type, source_key, target_id)


@pytest.mark.parametrize("fail", [False, True], ids=["parent-lands", "parent-fails"])
async def test_a_reference_being_delivered_here_is_waited_for_past_the_usual_wait(
    harness: Harness, mutations: Mutations, fail: bool
) -> None:
    """A child category waits for its parent while this driver is delivering it, however
    long that takes; once that delivery ends without a mapping it stops waiting at once."""
    mapping = SlowCategoryMapping("apparel", delay=0.6, fail=fail)
    ctx = harness.context(config_dict(reference_wait_s=0.1), mapping)
    driver = Magento2Driver()
    await driver.open(ctx)
    await driver.handle(
        mutations.job("category", {"code": "master", "parent": None, "labels": {}}), ctx
    )
    parent = mutations.job("category", {"code": "apparel", "parent": "master", "labels": {}})
    child = mutations.job("category", {"code": "men", "parent": "apparel", "labels": {}})

    async def parent_delivery() -> Any:
        try:
            return await driver.handle(parent, ctx)
        except RuntimeError as exc:
            return exc

    started = asyncio.get_running_loop().time()
    parent_result, child_result = await asyncio.gather(parent_delivery(), driver.handle(child, ctx))
    took = asyncio.get_running_loop().time() - started
    if not fail:
        assert parent_result.outcome == child_result.outcome == "delivered", child_result
        cats = harness.state.snapshot()["categories"]
        men, apparel = int(mapping.rows[(M_CATEGORY, "men")]), mapping.rows[(M_CATEGORY, "apparel")]
        assert cats[men]["parent_id"] == int(apparel)
    else:
        assert isinstance(parent_result, RuntimeError)
        assert child_result.outcome == "failed" and child_result.retryable
        assert "apparel" in (child_result.reason or "")
    # Waited for the parent's delivery (0.6 s, six times the usual wait), not longer.
    assert 0.6 <= took < 3.0
    assert driver._refs.in_flight == {}


async def test_category_created_before_a_lost_mapping_is_found_again(
    harness: Harness, mutations: Mutations
) -> None:
    jobs = [
        mutations.job("category", {"code": "master", "parent": None, "labels": {}}),
        mutations.job(
            "category", {"code": "tech", "parent": "master", "labels": {"en_US": "Tech"}}
        ),
    ]
    await deliver(harness, jobs)
    before = len(harness.state.snapshot()["categories"])
    await deliver(harness, jobs)  # fresh mapping: as if the first run crashed before put()
    assert len(harness.state.snapshot()["categories"]) == before


async def test_product_with_unsynced_category_is_retryable(
    harness: Harness, mutations: Mutations
) -> None:
    [result], _ = await deliver(
        harness, [mutations.job("product", product("SKU-6", categories=["x"]))]
    )
    assert result.outcome == "failed" and result.retryable
    assert "x" in (result.reason or "")
    assert "SKU-6" not in harness.state.products


async def test_configurable_product_with_children(
    harness: Harness, mutations: Mutations, magento_doc: SwaggerDocument
) -> None:
    mapping = MemoryMapping()
    jobs = _family(mutations, "model_1", "SKU-V")
    results, _ = await deliver(harness, jobs, mapping=mapping)
    assert [r.outcome for r in results] == ["delivered"] * 3, results
    snap = harness.state.snapshot()["products"]
    assert snap["model_1"]["type_id"] == "configurable"
    assert snap["model_1"]["children"] == ["SKU-Vs", "SKU-Vm"]
    [option] = snap["model_1"]["configurable_options"]
    assert option["attribute_id"] == "144"
    wanted = {int(harness.state.option_id("size", s) or 0) for s in ("s", "m")}
    assert {v["value_index"] for v in option["values"]} == wanted
    assert snap["SKU-Vs"]["values"]["admin"]["visibility"] == 1
    # Delivering a child again is harmless ("already attached" is success).
    again, _ = await deliver(harness, [jobs[1]], mapping=mapping)
    assert again[0].outcome == "delivered"
    validate_sent(magento_doc, harness.sent)


def _configurable_calls(h: Harness) -> list[tuple[str, str]]:
    """The requests that attach variants: the configurables' search, options and links."""
    return [
        (m, p)
        for m, p, _ in h.sent
        if "configurable-products" in p or (m, p) == ("GET", "/rest/all/V1/products")
    ]


async def test_an_update_that_moves_no_variant_does_not_attach_it_again(
    harness: Harness, mutations: Mutations
) -> None:
    """Status, price or text changes of an attached variant send its PUT only; a change of
    an axis, of its parent, a forced replay or a variant attached before the link was
    recorded attach it as before."""
    mapping = MemoryMapping()
    jobs = _family(mutations, "model_1", "SKU-V")
    results, _ = await deliver(harness, jobs, mapping=mapping)
    assert [r.outcome for r in results] == ["delivered"] * 3, results
    assert await mapping.get(M_LINKED, "SKU-Vs") == "model_1"
    variant = _variant("SKU-Vs", "model_1", "s", ())

    async def update(change: Any, mode: str = "live") -> list[tuple[str, str]]:
        change(variant)
        job = mutations.job("product", copy.deepcopy(variant))
        if mode != "live":
            job = job.model_copy(update={"mode": mode})
        harness.sent.clear()
        [result], _ = await deliver(harness, [job], mapping=mapping)
        assert result.outcome == "delivered", result
        assert harness.calls("PUT", "/V1/products/SKU-Vs"), "the change itself was not sent"
        return _configurable_calls(harness)

    def disable(v: dict[str, Any]) -> None:
        v["enabled"] = False

    def reprice(v: dict[str, Any]) -> None:
        v["values"]["rating"] = [{"locale": None, "scope": None, "data": 4}]
        v["values"]["name"][0]["data"] = "Renamed"

    def resize(v: dict[str, Any]) -> None:
        v["values"]["size"] = [{"locale": None, "scope": None, "data": "l"}]

    assert await update(disable) == []
    # `name` has no declared type: not known, it may be an axis, and the variant is attached.
    assert await update(reprice) != []
    # Learned from the attribute's own mutation (the mapping service), it is known.
    mapping.rows[(M_TYPE, "name")] = "pim_catalog_text"
    variant["values"]["name"][0]["data"] = "Renamed again"
    assert (
        await update(lambda v: v["values"].update(rating=[{**v["values"]["rating"][0], "data": 5}]))
        == []
    )
    # An axis value changed: the configurable must offer it.
    assert ("POST", "/rest/all/V1/configurable-products/model_1/child") in await update(resize)
    snap = harness.state.snapshot()["products"]["model_1"]
    wanted = {int(harness.state.option_id("size", s) or 0) for s in ("s", "m", "l")}
    assert {v["value_index"] for v in snap["configurable_options"][0]["values"]} == wanted
    # A replay that forces delivery attaches it again.
    assert await update(lambda v: v.update(enabled=True), "replay-force") != []
    # A variant attached before links were recorded: attached (harmlessly) once, then known.
    del mapping.rows[(M_LINKED, "SKU-Vs")]
    assert await update(disable) != []
    assert await mapping.get(M_LINKED, "SKU-Vs") == "model_1"
    assert await update(lambda v: v.update(enabled=True)) == []
    assert harness.state.snapshot()["products"]["model_1"]["children"] == ["SKU-Vs", "SKU-Vm"]


async def test_a_reference_delivered_meanwhile_is_waited_for(
    harness: Harness, mutations: Mutations
) -> None:
    # The category's own job is being delivered (by another worker) as the product arrives.
    mapping = MemoryMapping()
    ctx = harness.context(config_dict(reference_wait_s=5.0), mapping)
    driver = Magento2Driver()
    await driver.open(ctx)
    job = mutations.job("product", product("SKU-W", categories=["late"]))

    async def category_lands() -> None:
        await asyncio.sleep(0.3)
        await mapping.put(M_CATEGORY, "late", "2")

    result, _ = await asyncio.gather(driver.handle(job, ctx), category_lands())
    assert result.outcome == "delivered", result
    links = harness.state.snapshot()["products"]["SKU-W"]["category_links"]
    assert [link["category_id"] for link in links] == ["2"]


async def test_variant_before_its_model_is_retried(harness: Harness, mutations: Mutations) -> None:
    child = product("SKU-early", parent="model_9")
    child["values"]["size"] = [{"locale": None, "scope": None, "data": "s"}]
    [result], _ = await deliver(harness, [mutations.job("product", child)])
    assert result.outcome == "failed" and result.retryable
    assert "model_9" in (result.reason or "")


@pytest.mark.parametrize(("mode", "expect_present"), [("disable", True), ("delete", False)])
async def test_delete_disables_or_deletes(
    harness: Harness, mutations: Mutations, mode: str, expect_present: bool
) -> None:
    body = product("SKU-D")
    mapping = MemoryMapping()
    config = config_dict(on_delete=mode)
    await deliver(harness, [mutations.job("product", body)], config, mapping)
    job = mutations.job("product", None, key=f"product:{body['uuid']}")
    [result], _ = await deliver(harness, [job], config, mapping)
    assert result.outcome == "delivered"
    assert ("SKU-D" in harness.state.products) is expect_present
    if expect_present:
        assert harness.state.product_values("SKU-D")["admin"]["status"] == 2
    [again], _ = await deliver(harness, [job], config, mapping)
    assert again.outcome in ("delivered", "skipped")


async def test_expired_admin_token_is_renewed_once(harness: Harness, mutations: Mutations) -> None:
    mapping = MemoryMapping()
    ctx = harness.context(mapping=mapping)
    driver = Magento2Driver()
    await driver.open(ctx)
    assert (
        await driver.handle(mutations.job("product", product("SKU-T1")), ctx)
    ).outcome == "delivered"
    harness.state.revoke_tokens()
    result = await driver.handle(mutations.job("product", product("SKU-T2")), ctx)
    assert result.outcome == "delivered"
    assert len(harness.calls("POST", "/integration/admin/token")) == 2


async def test_wrong_password_is_a_permanent_401(harness: Harness, mutations: Mutations) -> None:
    config = config_dict(auth={"kind": "admin_token", "username": "admin", "password": "nope"})
    [result], _ = await deliver(harness, [mutations.job("product", product("SKU-P"))], config)
    assert result.outcome == "failed" and not result.retryable
    assert result.target_status == 401


async def test_integration_bearer_token() -> None:
    h = make_harness(integration_token="int-token")
    try:
        config = config_dict(auth={"kind": "integration_token", "token": "int-token"})
        [result], _ = await deliver(h, [Mutations().job("product", product("SKU-I"))], config)
        assert result.outcome == "delivered"
        assert not h.calls("POST", "/integration/admin/token")
    finally:
        await h.http.aclose()


async def test_server_errors_are_retryable_and_429_carries_retry_after(
    harness: Harness, mutations: Mutations
) -> None:
    harness.app.state.faults.fail_next(503, path_contains="/products")
    [result], _ = await deliver(harness, [mutations.job("product", product("SKU-E"))])
    assert result.outcome == "failed" and result.retryable and result.target_status == 503
    harness.app.state.faults.fail_next(429, path_contains="/products", retry_after=7)
    [limited], _ = await deliver(harness, [mutations.job("product", product("SKU-F"))])
    assert limited.retryable and limited.retry_after == 7


async def test_bad_request_is_permanent_with_parameters_filled_in(
    harness: Harness, mutations: Mutations
) -> None:
    config = config_dict(
        websites=[
            {
                "code": "x",
                "id": 77,
                "channel": "ecommerce",
                "currency": "EUR",
                "store_views": ["default", "fr", "de"],
            }
        ]
    )
    [result], _ = await deliver(harness, [mutations.job("product", product("SKU-W"))], config)
    assert result.outcome == "failed" and not result.retryable
    assert result.reason is not None and "website with id 77" in result.reason
    assert "%1" not in result.reason


async def test_duplicate_url_key_fails_clearly_or_gets_a_suffix(
    harness: Harness, mutations: Mutations
) -> None:
    first = product("SKU-U1")
    twin = product("SKU-U2")
    twin["values"]["name"] = first["values"]["name"]
    [ok, clash], _ = await deliver(
        harness, [mutations.job("product", first), mutations.job("product", twin)]
    )
    assert ok.outcome == "delivered"
    assert clash.outcome == "failed" and not clash.retryable
    assert clash.error_kind == "url_key_conflict" and "url_key_conflict" in (clash.reason or "")
    [fixed], _ = await deliver(
        harness,
        [mutations.job("product", twin, key="product:twin")],
        config_dict(url_key_conflict="suffix"),
    )
    assert fixed.outcome == "delivered"
    assert harness.state.product_values("SKU-U2")["admin"]["url_key"] == "shirt-sku-u1-sku-u2"


async def test_attribute_mutations_teach_types(harness: Harness, mutations: Mutations) -> None:
    mapping = MemoryMapping()
    config = config_dict(attributes=[{"akeneo": "brand", "magento": "brand"}])
    attr = mutations.job("attribute", {"code": "brand", "type": "pim_catalog_simpleselect"})
    body = product("SKU-L")
    body["values"]["brand"] = [{"locale": None, "scope": None, "data": "acme"}]
    results, _ = await deliver(harness, [attr, mutations.job("product", body)], config, mapping)
    assert [r.outcome for r in results] == ["delivered", "delivered"]
    assert mapping.rows[(M_TYPE, "brand")] == "pim_catalog_simpleselect"
    assert harness.state.product_values("SKU-L")["admin"]["brand"] == harness.state.option_id(
        "brand", "acme"
    )


async def test_attribute_option_entity_creates_option_with_store_labels(
    harness: Harness, mutations: Mutations
) -> None:
    mapping = MemoryMapping()
    job = mutations.job(
        "attribute_option",
        {"code": "navy", "attribute": "color", "labels": {"en_US": "Navy", "fr_FR": "Marine"}},
    )
    [result], _ = await deliver(harness, [job], mapping=mapping)
    assert result.outcome == "delivered"
    navy = harness.state.attributes["color"].options[-1]
    assert navy.label == "navy" and navy.store_labels == {1: "Navy", 2: "Marine"}
    assert mapping.rows[(M_OPTION, "color.navy")] == str(navy.id)


async def test_images_are_uploaded_once_per_content() -> None:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a2dd5e0b0000000049454e44ae426082"
    )

    async def download(request: Any) -> Response:
        return Response(png, media_type="image/png")

    akeneo = Starlette(routes=[Route("/api/rest/v1/media-files/{code:path}", download)])
    import httpx

    h = make_harness()
    magento_transport = h.http._transport
    routes = httpx.ASGITransport(app=akeneo)

    class Split(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.host == "akeneo.test":
                return await routes.handle_async_request(request)
            return await magento_transport.handle_async_request(request)

    h.http._transport = Split()
    try:
        rules = config_dict()["attributes"] + [
            {"akeneo": "image", "magento": "image", "type": "pim_catalog_image"}
        ]
        config = config_dict(attributes=rules, media={"base_url": "http://akeneo.test"})
        body = product("SKU-M")
        body["values"]["image"] = [
            {"locale": None, "scope": None, "data": "a/b/c/d/abcd_image.png"}
        ]
        m = Mutations()
        mapping = MemoryMapping()
        job = m.job("product", body)
        await deliver(h, [job, job], config, mapping)
        media = h.state.snapshot()["products"]["SKU-M"]["media"]
        assert len(media) == 1 and media[0]["types"] == ["image", "small_image"]
        assert len(h.calls("POST", "/media")) == 1
    finally:
        await h.http.aclose()


async def test_async_bulk_batch_maps_each_operation_back(
    mutations: Mutations, magento_doc: SwaggerDocument
) -> None:
    h = make_harness(SandboxConfig(attributes=SEEDS, bulk_delay=0.0))
    try:
        ctx, driver = await _open_bulk(h)
        good = [mutations.job("product", product(f"SKU-B{i}")) for i in range(3)]
        bad = product("SKU-" + "X" * 70)  # Magento refuses SKUs over 64 characters
        jobs = [*good, mutations.job("product", bad)]
        results = await driver.handle_batch(jobs, ctx)
        assert [r.outcome for r in results] == ["delivered"] * 3 + ["failed"]
        assert not results[3].retryable and "64" in (results[3].reason or "")
        assert h.state.product_values("SKU-B1")["fr"]["name"] == "Chemise SKU-B1"
        assert h.calls("POST", "/async/bulk/V1/products")
        assert ("product", f"product:{product('SKU-B0')['uuid']}") in ctx.mapping.rows  # type: ignore[attr-defined]
        validate_sent(magento_doc, h.sent)
    finally:
        await h.http.aclose()


async def test_async_bulk_creates_configurables_and_links_their_variants(
    mutations: Mutations, magento_doc: SwaggerDocument
) -> None:
    h = make_harness(SandboxConfig(attributes=SEEDS, bulk_delay=0.0))
    try:
        ctx, driver = await _open_bulk(h)
        jobs = _family(mutations, "model_b", "SKU-BV")
        results = await driver.handle_batch(jobs, ctx)
        assert [r.outcome for r in results] == ["delivered"] * 3, results
        # One admin bulk for the three creations; no product went through the one-by-one path.
        admin_bulks = [c for c in h.sent if c[1] == "/rest/all/async/bulk/V1/products"]
        assert len(admin_bulks) == 1 and len(admin_bulks[0][2]) == 3
        assert not [c for c in h.sent if c[:2] == ("POST", "/rest/all/V1/products")]
        snap = h.state.snapshot()["products"]
        assert snap["model_b"]["type_id"] == "configurable"
        assert sorted(snap["model_b"]["children"]) == ["SKU-BVm", "SKU-BVs"]
        [option] = snap["model_b"]["configurable_options"]
        wanted = {int(h.state.option_id("size", s) or 0) for s in ("s", "m")}
        assert {v["value_index"] for v in option["values"]} == wanted
        assert ("product_model", "model_b") in ctx.mapping.rows  # type: ignore[attr-defined]
        assert ctx.mapping.rows[(M_MODEL, "model_b")].endswith(":model_b")  # type: ignore[attr-defined]
        validate_sent(magento_doc, h.sent)
    finally:
        await h.http.aclose()


class CountingMapping(MemoryMapping):
    """A MemoryMapping that counts its look-ups per entity type."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    async def get(self, entity_type: str, source_key: str) -> str | None:
        self.reads[entity_type] = self.reads.get(entity_type, 0) + 1
        return await super().get(entity_type, source_key)

    async def get_many(self, entity_type: str, source_keys: list[str]) -> dict[str, str]:
        self.reads[entity_type] = self.reads.get(entity_type, 0) + 1
        return await super().get_many(entity_type, source_keys)


async def test_async_bulk_links_the_variants_of_every_parent_in_a_few_requests(
    mutations: Mutations, magento_doc: SwaggerDocument
) -> None:
    h = make_harness(SandboxConfig(attributes=SEEDS, bulk_delay=0.0))
    try:
        mapping = CountingMapping()
        mapping.rows[(M_CATEGORY, "shirts")] = "2"
        ctx, driver = await _open_bulk(h, mapping)
        models = [f"model_{m}" for m in "xyz"]
        await driver.handle_batch([mutations.job("product_model", _model(m)) for m in models], ctx)
        h.sent.clear()
        mapping.reads.clear()
        variants = [
            _variant(f"SKU-{m}-{size}", m, size) for m in models for size in ("s", "m", "l")
        ]
        results = await driver.handle_batch([mutations.job("product", v) for v in variants], ctx)
        assert [r.outcome for r in results] == ["delivered"] * 9, results
        snap = h.state.snapshot()["products"]
        wanted = {int(h.state.option_id("size", s) or 0) for s in ("s", "m", "l")}
        for m in models:
            assert sorted(snap[m]["children"]) == sorted(f"SKU-{m}-{s}" for s in ("s", "m", "l"))
            [option] = snap[m]["configurable_options"]
            assert {v["value_index"] for v in option["values"]} == wanted
        # The three configurables' options: one search, one bulk update, one search to check
        # it; their nine variants: one bulk request. No request per parent or per child.
        writes = [(m, p) for m, p, _ in h.sent if m != "GET" and "/attributes/" not in p]
        assert sorted(writes) == [
            ("POST", "/rest/all/async/bulk/V1/configurable-products/bySku/child"),
            ("POST", "/rest/all/async/bulk/V1/products"),
            ("POST", "/rest/de/async/bulk/V1/products"),
            ("POST", "/rest/fr/async/bulk/V1/products"),
            ("PUT", "/rest/all/async/bulk/V1/products/bySku"),
        ]
        sizes = [b["option"]["label"] for m, p, b in h.sent if m == "POST" and "/size/" in p]
        assert sorted(sizes) == ["l", "m", "s"]
        [put] = [b for m, _, b in h.sent if m == "PUT"]
        assert sorted(item["sku"] for item in put) == models
        [attach] = [b for _, p, b in h.sent if p.endswith("/bySku/child")]
        skus = [v["values"]["sku"][0]["data"] for v in variants]
        assert sorted(item["childSku"] for item in attach) == sorted(skus)
        assert len([p for m, p, _ in h.sent if (m, p) == ("GET", "/rest/all/V1/products")]) == 3
        # One look-up per kind of reference for the whole batch.
        assert mapping.reads[M_CATEGORY] == 1
        assert mapping.reads[M_OPTION] == 1  # the axes then find their options in the cache
        assert mapping.reads[M_MODEL] == 1
        validate_sent(magento_doc, h.sent)

        # Variants delivered again: "already attached" is success, and the complete
        # options are left alone.
        h.sent.clear()
        again = await driver._configurables.link_families(
            {"model_x": list(zip(variants[:3], skus[:3], strict=True))},
            driver._api(ctx),
            mapping,
            bulk=True,
        )
        assert again == {"model_x": [None, None, None]}
        assert [m for m, _, _ in h.sent].count("PUT") == 0
        assert sorted(snap["model_x"]["children"]) == sorted(
            h.state.snapshot()["products"]["model_x"]["children"]
        )
    finally:
        await h.http.aclose()


async def test_async_bulk_fails_only_the_variants_whose_parent_is_missing(
    mutations: Mutations,
) -> None:
    h = make_harness(SandboxConfig(attributes=SEEDS, bulk_delay=0.0))
    try:
        mapping = MemoryMapping()
        mapping.rows[(M_CATEGORY, "shirts")] = "2"
        config = config_dict(bulk="async", bulk_poll_interval_s=0.01, reference_wait_s=0.1)
        ctx = h.context(config, mapping)
        driver = Magento2Driver()
        await driver.open(ctx)
        jobs = [
            mutations.job("product_model", _model("model_ok")),
            mutations.job("product", _variant("SKU-ok", "model_ok", "s")),
            mutations.job("product", _variant("SKU-orphan", "model_gone", "s")),
        ]
        results = await driver.handle_batch(jobs, ctx)
        assert [r.outcome for r in results] == ["delivered", "delivered", "failed"]
        assert results[2].retryable and "model_gone" in (results[2].reason or "")
        assert h.state.snapshot()["products"]["model_ok"]["children"] == ["SKU-ok"]
    finally:
        await h.http.aclose()


async def test_searches_by_sku_are_split_to_keep_urls_short(
    mutations: Mutations, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make_harness(SandboxConfig(attributes=SEEDS, bulk_delay=0.0))
    try:
        ctx, driver = await _open_bulk(h)
        skus = [f"SKU-S{i}" for i in range(7)]
        results = await driver.handle_batch(
            [mutations.job("product", product(s)) for s in skus], ctx
        )
        assert [r.outcome for r in results] == ["delivered"] * 7
        h.sent.clear()
        monkeypatch.setattr(lookups, "SEARCH_SKUS_CHARS", 20)
        found = await lookups.products_by_sku(driver._api(ctx), [*skus, "SKU-none"])
        assert sorted(found) == skus
        searches = [p for m, p, _ in h.sent if (m, p) == ("GET", "/rest/all/V1/products")]
        assert len(searches) == 3  # "SKU-S0,SKU-S1,SKU-S2" is 20 characters: three per search
    finally:
        await h.http.aclose()


async def test_bad_input_is_a_permanent_failure(harness: Harness, mutations: Mutations) -> None:
    job = mutations.job("product", product("SKU-J"))
    assert job is not None
    broken = job.model_copy(update={"mutation": job.mutation.model_copy(update={"state": "{"})})
    [result], _ = await deliver(harness, [broken])
    assert result.outcome == "failed" and not result.retryable and result.error_kind == "bad_input"
