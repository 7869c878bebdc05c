"""The integrations of the dispatcher's driver, reloaded live, each bound to its driver."""

from __future__ import annotations

import asyncio
import logging
import time

from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from pydantic import ValidationError

from pim_hub.drivers.base import Driver, IntegrationContext
from pim_hub.registry.limits import (
    InvalidRateLimit,
    RateLimit,
    without_rate_limit,
)
from pim_hub.registry.mapping import PostgresMappingService
from pim_hub.registry.model import Integration
from pim_hub.registry.store import list_integrations
from pim_hub.runtime import metrics
from pim_hub.services.dispatcher.base import DispatcherBase
from pim_hub.services.dispatcher.work import (
    _Bound,
    logger,
)


class IntegrationsMixin(DispatcherBase):
    """Integrations reloaded every few seconds and bound to a driver instance."""

    # ---- integrations -----------------------------------------------------------------------

    async def _integrations(self, force: bool = False) -> dict[str, _Bound]:
        """Integrations of this driver, reloaded every few seconds so changes apply live."""
        if not force and time.monotonic() - self._loaded_at < self.settings.integrations_refresh_s:
            return self._bound
        self._loaded_at = time.monotonic()
        try:
            rows = await asyncio.get_running_loop().run_in_executor(
                None, list_integrations, self.settings.require_database()
            )
        except (OperationalError, PoolTimeout) as exc:
            # The database is away: keep delivering with the integrations known.
            logger.warning(
                "could not reload the integrations; keeping the ones known",
                extra={"error": f"{exc!r}"[:500]},
            )
            return self._bound
        fresh: dict[str, _Bound] = {}
        for integ in rows:
            if integ.driver != self.driver_key:
                continue
            old = self._bound.get(integ.id)
            if old is not None and old.integration == integ:
                fresh[integ.id] = old
                continue
            if old is not None and old.driver is not None:
                self._retired.append(old.driver)  # batches may still use it; closed at exit
            fresh[integ.id] = await self._bind(integ)
        for gone in set(self._bound) - set(fresh):
            driver = self._bound[gone].driver
            if driver is not None:
                self._retired.append(driver)
        self._bound = fresh
        return fresh

    async def _bind(self, integ: Integration) -> _Bound:
        default = RateLimit(None, self.options.max_in_flight, 1)
        try:
            limit = RateLimit.from_config(integ.config, self.options.max_in_flight)
            config = self.driver_cls.validate_config(without_rate_limit(integ.config))
        except (InvalidRateLimit, ValidationError) as exc:
            # Its jobs go to the dead letters with this reason (redrive once fixed).
            logger.error("integration config invalid", extra={"integration": integ.id})
            return _Bound(integ, None, None, default, broken=f"invalid integration config: {exc}")
        driver = self.driver_cls()
        context = IntegrationContext(
            integration_id=integ.id,
            config=config,
            mapping=PostgresMappingService(self._pool, integ.id),
            http=self._http,
            logger=logging.getLogger(f"drivers.{self.driver_key}.{integ.id}"),
            metrics=metrics.TargetCalls(self.driver_key, integ.id),
        )
        await driver.open(context)
        return _Bound(integ, driver, context, limit, batching=self._batches(driver, context))

    def _batches(self, driver: Driver, context: IntegrationContext) -> bool:
        """Whether this integration's jobs go to handle_batch a batch at a time.

        The driver's `wants_batches(context)` decides per integration (the Magento driver
        batches only with `bulk: async`; its sync mode is faster job by job, concurrently).
        """
        return driver.wants_batches(context)
