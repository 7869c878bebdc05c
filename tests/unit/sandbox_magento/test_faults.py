"""Tests of fault injection: seeded 5xx, 429 with Retry-After, scripted failures, latency."""

from __future__ import annotations

import time

from pim_hub.sandbox.magento import FaultConfig
from pim_hub.sandbox.magento.faults import FaultInjector
from pim_hub.sandbox.magento.spec import MagentoSpec

from .conftest import make_sandbox


def statuses(spec: MagentoSpec, faults: FaultConfig, n: int = 40) -> list[int]:
    box = make_sandbox(spec, faults=faults)
    box.login()
    return [box.get("/rest/V1/store/websites").status_code for _ in range(n)]


def test_seeded_faults_are_reproducible(spec: MagentoSpec) -> None:
    config = FaultConfig(error_rate=0.3, rate_limit_rate=0.2, seed=7)
    first = statuses(spec, config)
    assert first == statuses(spec, config)
    assert {200, 500, 429} <= set(first)
    assert statuses(spec, FaultConfig(error_rate=0.3, rate_limit_rate=0.2, seed=8)) != first


def test_rate_limit_has_retry_after_and_magento_body(spec: MagentoSpec) -> None:
    box = make_sandbox(spec, faults=FaultConfig(rate_limit_rate=1.0, retry_after=3, seed=1))
    box.login()  # the token endpoint is spared by default
    response = box.get("/rest/V1/store/websites")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json() == {"message": "Too Many Requests"}


def test_injected_5xx_masks_the_error_like_magento(spec: MagentoSpec) -> None:
    box = make_sandbox(spec, faults=FaultConfig(error_rate=1.0, error_status=503, seed=1))
    box.login()
    response = box.get("/rest/V1/store/websites")
    assert response.status_code == 503
    assert response.json()["message"].startswith("Internal Error.")
    assert response.json()["parameters"]["reportId"].startswith("webapi-")


def test_scripted_failures_hit_matching_paths_only(spec: MagentoSpec) -> None:
    box = make_sandbox(spec)
    box.login()
    box.app.state.faults.fail_next(502, times=2, path_contains="/products")
    assert box.get("/rest/V1/store/websites").status_code == 200
    codes = [box.product(f"S-{i}", name=f"n{i}").status_code for i in range(3)]
    assert codes == [502, 502, 200]
    assert set(box.state.products) == {"S-2"}


def test_latency_delays_responses(spec: MagentoSpec) -> None:
    box = make_sandbox(spec, faults=FaultConfig(latency=0.05))
    box.login()
    started = time.perf_counter()
    box.get("/rest/V1/store/websites")
    assert time.perf_counter() - started >= 0.05


def test_bulk_operations_can_fail_retriably(spec: MagentoSpec) -> None:
    box = make_sandbox(spec, faults=FaultConfig(bulk_failure_rate=1.0, seed=3))
    box.login()
    uuid = box.post("/rest/async/bulk/V1/products", [{"product": {"sku": "F-1"}}]).json()[
        "bulk_uuid"
    ]
    operation = box.get(f"/rest/V1/bulk/{uuid}/status").json()["operations_list"][0]
    assert operation["status"] == 2
    assert "F-1" not in box.state.products


def test_injector_without_faults_never_fails() -> None:
    injector = FaultInjector()
    assert all(injector.draw("/rest/V1/x", is_auth=False).status is None for _ in range(100))
    assert injector.injected == 0
