"""Test helpers for the Magento 2 driver: in-memory mapping, sandbox over ASGI, jobs from diffs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from pim_hub.drivers.base import IntegrationContext, MappingEntry
from pim_hub.drivers.magento2 import Magento2Config
from pim_hub.sandbox.magento import AttributeSeed, MagentoState, SandboxConfig, create_app
from pim_hub.schemas.events import Job
from pim_hub.services.mutator.core import diffing
from tests.spec_validation import SPECS_DIR, SwaggerDocument

MAGENTO_SPEC = SPECS_DIR / "magento" / "admin-schema-2.4.9.yaml"
BASE = "http://magento.test"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin123"

SEEDS = (
    AttributeSeed("color", 93, "select", "Color"),
    AttributeSeed("size", 144, "select", "Size"),
    AttributeSeed("brand", 83, "select", "Brand"),
    AttributeSeed("material", 150, "multiselect", "Material", scope="store"),
)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MemoryMapping:
    """EntityMappingService in a dict (what PostgresMappingService does, without a database)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}

    async def get(self, entity_type: str, source_key: str) -> str | None:
        return self.rows.get((entity_type, source_key))

    async def get_many(self, entity_type: str, source_keys: list[str]) -> dict[str, str]:
        return {
            k: self.rows[(entity_type, k)] for k in source_keys if (entity_type, k) in self.rows
        }

    async def put(self, entity_type: str, source_key: str, target_id: str) -> None:
        self.rows[(entity_type, source_key)] = target_id

    async def put_many(self, entity_type: str, pairs: dict[str, str]) -> None:
        for k, v in pairs.items():
            self.rows[(entity_type, k)] = v

    async def source_for(self, entity_type: str, target_id: str) -> str | None:
        for (etype, key), value in self.rows.items():
            if etype == entity_type and value == target_id:
                return key
        return None

    async def get_entry(self, entity_type: str, source_key: str) -> MappingEntry | None:
        found = await self.get_entries(entity_type, [source_key])
        return found.get(source_key)

    async def get_entries(
        self, entity_type: str, source_keys: list[str]
    ) -> dict[str, MappingEntry]:
        return {
            k: MappingEntry(self.rows[(entity_type, k)], EPOCH)
            for k in source_keys
            if (entity_type, k) in self.rows
        }

    async def remove(self, entity_type: str, source_key: str) -> bool:
        return self.rows.pop((entity_type, source_key), None) is not None


def config_dict(**overrides: Any) -> dict[str, Any]:
    """A config for the sandbox's default store views (default=en_US, fr, de)."""
    base: dict[str, Any] = {
        "base_url": BASE,
        "auth": {"kind": "admin_token", "username": ADMIN_USER, "password": ADMIN_PASSWORD},
        "locales": {"en_US": ["default"], "fr_FR": ["fr"], "de_DE": ["de"]},
        "admin_locale": "en_US",
        "websites": [
            {
                "code": "base",
                "id": 1,
                "channel": "ecommerce",
                "currency": "EUR",
                "store_views": ["default", "fr", "de"],
            }
        ],
        "attributes": [
            {"akeneo": "name", "magento": "name"},
            {"akeneo": "description", "magento": "description"},
            {"akeneo": "price", "magento": "price"},
            {"akeneo": "weight", "magento": "weight"},
            {"akeneo": "color", "magento": "color", "type": "pim_catalog_simpleselect"},
            {"akeneo": "size", "magento": "size", "type": "pim_catalog_simpleselect"},
            {"akeneo": "brand", "magento": "brand", "type": "pim_catalog_simpleselect"},
            {"akeneo": "material", "magento": "material", "type": "pim_catalog_multiselect"},
            {"akeneo": "is_new", "magento": "is_new"},
            {"akeneo": "release_date", "magento": "release_date", "type": "pim_catalog_date"},
            {"akeneo": "rating", "magento": "rating", "type": "pim_catalog_number"},
        ],
        "attribute_sets": {"clothing": 9},
        "family_variant_axes": {"clothing_size": ["size"]},
    }
    base.update(overrides)
    return base


@dataclass
class Harness:
    """Driver-side view of a sandbox: its state, an http client and every request sent."""

    state: MagentoState
    app: Any
    http: httpx.AsyncClient
    sent: list[tuple[str, str, Any]] = field(default_factory=list)

    def context(
        self, config: dict[str, Any] | None = None, mapping: MemoryMapping | None = None
    ) -> IntegrationContext:
        return IntegrationContext(
            integration_id="magento-test",
            config=Magento2Config.model_validate(config or config_dict()),
            mapping=mapping or MemoryMapping(),
            http=self.http,
            logger=logging.getLogger("tests.magento2"),
        )

    def calls(self, method: str | None = None, contains: str = "") -> list[tuple[str, str, Any]]:
        return [c for c in self.sent if (method is None or c[0] == method) and contains in c[1]]


def make_harness(
    sandbox_config: SandboxConfig | None = None,
    extra: Callable[[httpx.Request], None] | None = None,
    **app_kw: Any,
) -> Harness:
    state = MagentoState(sandbox_config or SandboxConfig(attributes=SEEDS))
    app = create_app(state, admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD, **app_kw)
    sent: list[tuple[str, str, Any]] = []

    async def record(request: httpx.Request) -> None:
        body = orjson.loads(request.content) if request.content else None
        sent.append((request.method, request.url.path, body))
        if extra is not None:
            extra(request)

    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE, event_hooks={"request": [record]}
    )
    return Harness(state, app, http, sent)


def spec_path_of(path: str) -> str:
    """`/rest/<store>/[async/bulk/]V1/x` -> `/V1/x` (the document's path)."""
    parts = path.split("/V1/", 1)
    return "/V1/" + parts[1]


def validate_sent(doc: SwaggerDocument, sent: list[tuple[str, str, Any]]) -> int:
    """Validate every request body the driver sent against the official document."""
    checked = 0
    for method, path, body in sent:
        if body is None or path.endswith("/integration/admin/token"):
            continue
        template_path = spec_path_of(path)
        if "/async/bulk/" in path:
            for item in body:
                doc.validate_request(method, template_path, item)
        else:
            doc.validate_request(method, template_path, body)
        checked += 1
    return checked


class Mutations:
    """Builds jobs the way the mutator does: diff of the previous and new state."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any] | None] = {}
        self.tick = 0

    def job(
        self,
        entity_type: str,
        payload: dict[str, Any] | None,
        key: str | None = None,
        driver: str = "magento2",
    ) -> Job:
        from pim_hub.schemas.entities import entity_key

        ekey = key or entity_key(entity_type, payload or {})
        self.tick += 1
        version = f"2024-01-01T00:{self.tick // 60:02d}:{self.tick % 60:02d}+00:00"
        decision = diffing.decide(entity_type, ekey, self.stored.get(ekey), payload, version)
        self.stored[ekey] = decision.new_state
        if decision.kind != "mutation":
            raise AssertionError(f"no mutation for {ekey}: {decision.kind}")
        now = datetime.now(UTC)
        changes = [diffing.change_to_record(c) for c in decision.changes]
        mutation = {
            "mutation_id": decision.mutation_id,
            "entity_type": entity_type,
            "entity_key": ekey,
            "operation": decision.operation,
            "changes": changes,
            "state": orjson.dumps(decision.state_payload).decode()
            if decision.state_payload is not None
            else None,
            "version": version,
            "causation_id": str(uuid.uuid4()),
            "source_received_at": now,
            "created_at": now,
        }
        return Job.model_validate(
            {
                "job_id": str(uuid.uuid4()),
                "mutation": mutation,
                "integration_id": "magento-test",
                "driver": driver,
                "priority": "normal",
                "created_at": now,
            }
        )


def product(sku: str, **over: Any) -> dict[str, Any]:
    """An Akeneo product with localised, scoped, select, price and metric values."""
    body: dict[str, Any] = {
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, sku)),
        "enabled": True,
        "family": "clothing",
        "categories": [],
        "parent": None,
        "values": {
            "sku": [{"locale": None, "scope": None, "data": sku}],
            "name": [
                {"locale": "en_US", "scope": None, "data": f"Shirt {sku}"},
                {"locale": "fr_FR", "scope": None, "data": f"Chemise {sku}"},
                {"locale": "de_DE", "scope": None, "data": f"Hemd {sku}"},
            ],
            "description": [
                {"locale": "en_US", "scope": "ecommerce", "data": "<p>Nice</p>"},
                {"locale": "fr_FR", "scope": "ecommerce", "data": "<p>Belle</p>"},
                {"locale": "en_US", "scope": "mobile", "data": "short"},
            ],
            "price": [
                {
                    "locale": None,
                    "scope": None,
                    "data": [
                        {"amount": "19.90", "currency": "EUR"},
                        {"amount": "21.50", "currency": "USD"},
                    ],
                }
            ],
            "weight": [
                {"locale": None, "scope": None, "data": {"amount": "1500.0000", "unit": "GRAM"}}
            ],
            "color": [{"locale": None, "scope": None, "data": "red"}],
            "material": [{"locale": None, "scope": None, "data": ["cotton", "wool"]}],
            "is_new": [{"locale": None, "scope": None, "data": True}],
            "release_date": [{"locale": None, "scope": None, "data": "2024-03-01T00:00:00+00:00"}],
            "rating": [{"locale": None, "scope": None, "data": "4.5000"}],
        },
    }
    body.update(over)
    return body


def json_state(job: Job) -> dict[str, Any]:
    assert job.mutation.state is not None
    result: dict[str, Any] = orjson.loads(job.mutation.state)
    return result
