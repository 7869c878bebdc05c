"""Fixtures of the Magento 2 driver unit tests (sandbox in-process over ASGI, no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.spec_validation import SwaggerDocument
from tests.unit.magento2.helpers import MAGENTO_SPEC, Harness, Mutations, make_harness


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def magento_doc() -> SwaggerDocument:
    return SwaggerDocument.load(MAGENTO_SPEC)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = make_harness()
    yield h
    await h.http.aclose()


@pytest.fixture
def mutations() -> Mutations:
    return Mutations()
