"""The driver contract suite: every driver's test class subclasses DriverContract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from pim_hub.drivers.base import Driver, IntegrationContext
from pim_hub.schemas.entities import ENTITY_TYPES
from pim_hub.schemas.events import Job


@dataclass
class ContractEnv:
    """A target (simulated) and what the contract needs to exercise a driver against it.

    Attributes:
        context: the integration context to pass to the driver.
        accepted_job: a job the target accepts.
        rejected_job: a job the target refuses for good (validation error).
        inject_server_error: makes the target's next call answer a 5xx.
        target_state: a JSON-able picture of the target, to compare before/after.
    """

    context: IntegrationContext
    accepted_job: Job
    rejected_job: Job
    inject_server_error: Callable[[], None]
    target_state: Callable[[], Any]


class DriverContract(ABC):
    """Behaviour every driver guarantees; subclasses say how to build a target for it."""

    driver_cls: type[Driver]

    @abstractmethod
    def valid_config(self) -> dict[str, Any]:
        """A config the driver's model accepts."""

    @abstractmethod
    def environment(self) -> AbstractAsyncContextManager[ContractEnv]:
        """A fresh target and context (an async context manager)."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    async def env(self) -> AsyncIterator[ContractEnv]:
        async with self.environment() as env:
            yield env

    async def _driver(self, env: ContractEnv) -> Driver:
        driver = self.driver_cls()
        await driver.open(env.context)
        return driver

    # ------------------------------------------------------------------ declaration
    def test_declares_identity_and_supported_types(self) -> None:
        cls = self.driver_cls
        assert cls.key and cls.key == cls.key.lower() and " " not in cls.key
        assert cls.name and cls.version and cls.description
        assert cls.supported_entity_types and cls.supported_entity_types <= ENTITY_TYPES
        assert issubclass(cls.config_model, BaseModel)

    def test_validates_config(self) -> None:
        assert isinstance(self.driver_cls.validate_config(self.valid_config()), BaseModel)
        with pytest.raises(ValidationError):
            self.driver_cls.validate_config({"unexpected": object()})

    # ------------------------------------------------------------------ delivery
    @pytest.mark.anyio
    async def test_delivers_an_accepted_job(self, env: ContractEnv) -> None:
        driver = await self._driver(env)
        before = env.target_state()
        result = await driver.handle(env.accepted_job, env.context)
        assert result.outcome == "delivered", result
        assert env.target_state() != before
        await driver.close()

    @pytest.mark.anyio
    async def test_the_same_job_twice_leaves_the_same_state(self, env: ContractEnv) -> None:
        driver = await self._driver(env)
        first = await driver.handle(env.accepted_job, env.context)
        state = env.target_state()
        second = await driver.handle(env.accepted_job, env.context)
        assert first.outcome == "delivered" and second.outcome in ("delivered", "skipped")
        assert env.target_state() == state

    @pytest.mark.anyio
    async def test_server_error_is_retryable(self, env: ContractEnv) -> None:
        driver = await self._driver(env)
        env.inject_server_error()
        result = await driver.handle(env.accepted_job, env.context)
        assert result.outcome == "failed" and result.retryable
        assert result.reason
        again = await driver.handle(env.accepted_job, env.context)
        assert again.outcome == "delivered"

    @pytest.mark.anyio
    async def test_rejection_is_permanent_with_a_reason(self, env: ContractEnv) -> None:
        driver = await self._driver(env)
        result = await driver.handle(env.rejected_job, env.context)
        assert result.outcome == "failed" and not result.retryable
        assert result.reason and result.error_kind

    @pytest.mark.anyio
    async def test_batch_gives_one_result_per_job_in_order(self, env: ContractEnv) -> None:
        driver = await self._driver(env)
        jobs = [env.accepted_job, env.rejected_job, env.accepted_job]
        results = await driver.handle_batch(jobs, env.context)
        assert [r.outcome for r in results] == ["delivered", "failed", "delivered"]
