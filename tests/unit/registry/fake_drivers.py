"""Driver classes for discovery tests: one good, several broken in different ways."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, SecretStr

from pim_hub.drivers.base import DeliveryResult, Driver, IntegrationContext
from pim_hub.schemas.events import Job


class Credentials(BaseModel):
    user: str
    password: str


class FakeConfig(BaseModel):
    endpoint: str
    api_secret: SecretStr | None = None
    account: Credentials | None = None
    retries: int = Field(3, ge=0)


class GoodDriver(Driver):
    name: ClassVar[str] = "Fake"
    key: ClassVar[str] = "fake-good"
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = "a fake driver for tests"
    supported_entity_types: ClassVar[frozenset[str]] = frozenset({"product", "category"})
    config_model: ClassVar[type[BaseModel]] = FakeConfig

    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        return DeliveryResult.delivered()


class ClaimsWebhookKey(GoodDriver):
    key: ClassVar[str] = "webhook"


class Incomplete(Driver):  # declares no key, version, ...
    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        return DeliveryResult.delivered()


class NotADriver:
    key = "nope"
