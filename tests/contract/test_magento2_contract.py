"""The Magento 2 driver under the driver contract (the in-process Magento sandbox)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pim_hub.drivers.magento2 import Magento2Driver
from tests.contract.driver_contract import ContractEnv, DriverContract
from tests.unit.magento2.helpers import Mutations, config_dict, make_harness, product


class TestMagento2Contract(DriverContract):
    driver_cls = Magento2Driver

    def valid_config(self) -> dict[str, Any]:
        return config_dict()

    @asynccontextmanager
    async def environment(self) -> AsyncIterator[ContractEnv]:
        h = make_harness()
        mutations = Mutations()
        accepted = mutations.job("product", product("SKU-OK"))
        # Magento refuses SKUs longer than 64 characters.
        rejected = mutations.job("product", product("SKU-" + "Z" * 80))
        assert accepted is not None and rejected is not None

        def state() -> Any:
            snap = h.state.snapshot()
            for p in snap["products"].values():
                p.pop("updated_at", None)
            return {k: snap[k] for k in ("products", "categories", "attribute_options")}

        try:
            yield ContractEnv(
                context=h.context(),
                accepted_job=accepted,
                rejected_job=rejected,
                inject_server_error=lambda: h.app.state.faults.fail_next(
                    503, path_contains="/products"
                ),
                target_state=state,
            )
        finally:
            await h.http.aclose()
