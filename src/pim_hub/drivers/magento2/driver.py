"""The Magento 2 driver: products, configurables, categories and options over the REST API.

How the driver learns Akeneo attribute types (values in a state may not carry them), by
precedence: the integration's `attribute_types`, a rule's `type`, `attribute_type` in the
values, types recorded from `attribute` mutations in the mapping service (entity type
`akeneo_attribute_type`), then the shape of the data (see builder.resolve_type).

The driver routes each job; the work is done beside it:

- `products.py`: products and root product models (configurables), with `images.py`;
- `configurables.py`: variants attached to their configurable, its options completed;
- `categories.py`: the category tree;
- `attributes.py`: attribute types, family variant axes, options, families;
- `deletes.py`: product and category deletions;
- `batch.py` and `bulk.py`: batches through the async bulk API;
- `lookups.py`, `options.py`, `references.py`: the Magento ids and PIM facts it keeps.
"""

from __future__ import annotations

from typing import ClassVar

import orjson
from pydantic import BaseModel

from pim_hub.drivers.base import DeliveryResult, Driver, EntityMappingService, IntegrationContext
from pim_hub.drivers.magento2 import attributes
from pim_hub.drivers.magento2.akeneo_media import AkeneoMedia
from pim_hub.drivers.magento2.batch import Batches
from pim_hub.drivers.magento2.categories import Categories
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.config import Magento2Config
from pim_hub.drivers.magento2.configurables import Configurables
from pim_hub.drivers.magento2.deletes import delete_product
from pim_hub.drivers.magento2.errors import MagentoError, RetryableError, as_result
from pim_hub.drivers.magento2.lookups import CategoryIds
from pim_hub.drivers.magento2.options import OptionCatalogue
from pim_hub.drivers.magento2.products import Products
from pim_hub.drivers.magento2.references import References
from pim_hub.schemas.events import Job


class Magento2Driver(Driver):
    """Delivers Akeneo products, product models, categories and options to Magento 2."""

    name: ClassVar[str] = "Magento 2"
    key: ClassVar[str] = "magento2"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Magento 2 / Adobe Commerce REST API (sync or async bulk)"
    supported_entity_types: ClassVar[frozenset[str]] = frozenset(
        {
            "product",
            "product_model",
            "category",
            "attribute",
            "attribute_option",
            "family",
            "family_variant",
        }
    )
    config_model: ClassVar[type[BaseModel]] = Magento2Config

    def __init__(self) -> None:
        self._client: MagentoClient | None = None
        # What one integration's jobs share: the attribute types learned and the references
        # being waited for, the option ids, the category ids.
        self._refs = References()
        self._opts = OptionCatalogue()
        category_ids = CategoryIds(self._refs)
        self._configurables = Configurables(self._refs, self._opts)
        self._products = Products(self._refs, self._opts, category_ids, self._configurables)
        self._categories = Categories(self._refs, category_ids)
        self._batches = Batches(self._refs, self._products, self._configurables)

    # ------------------------------------------------------------------ lifecycle
    async def open(self, context: IntegrationContext) -> None:
        """Create the REST client of one integration."""
        self._connect(context)

    @staticmethod
    def _config(context: IntegrationContext) -> Magento2Config:
        config = context.config
        if not isinstance(config, Magento2Config):
            config = Magento2Config.model_validate(config.model_dump())
        return config

    def _connect(self, context: IntegrationContext) -> MagentoClient:
        """The REST client (and the Akeneo media client, when images are configured)."""
        config = self._config(context)
        self._client = MagentoClient(config, context.http, context.metrics)
        if config.media is not None:
            self._products.media = AkeneoMedia(config.media, context.http, config.timeout_s)
        return self._client

    def _api(self, context: IntegrationContext) -> MagentoClient:
        return self._client if self._client is not None else self._connect(context)

    # ------------------------------------------------------------------ entry points
    async def handle(self, job: Job, context: IntegrationContext) -> DeliveryResult:
        """Deliver one job; Magento's answers become delivered / retry / permanent results."""
        api = self._api(context)
        try:
            return await self._handle(job, api, context.mapping)
        except MagentoError as exc:
            context.logger.info(
                "magento delivery failed",
                extra={
                    "job_id": job.job_id,
                    "entity_key": job.mutation.entity_key,
                    "error_kind": exc.kind,
                },
            )
            return as_result(exc)

    def wants_batches(self, context: IntegrationContext) -> bool:
        """Batches only pay with the async bulk API; sync mode is faster job by job.

        The dispatcher asks this per integration: True → `handle_batch` gets a batch at a
        time; False → `handle` is called for each job, concurrently up to the limit.
        """
        return self._config(context).bulk == "async"

    async def handle_batch(
        self, jobs: list[Job], context: IntegrationContext
    ) -> list[DeliveryResult]:
        """Deliver several jobs; with `bulk: async`, product creations go through the bulk API
        (see `batch.py`), the other jobs one by one."""
        api = self._api(context)
        if api.config.bulk != "async":
            return [await self.handle(job, context) for job in jobs]

        async def one(job: Job) -> DeliveryResult:
            return await self.handle(job, context)

        return await self._batches.deliver(jobs, api, context.mapping, one)

    async def _handle(
        self, job: Job, api: MagentoClient, mapping: EntityMappingService
    ) -> DeliveryResult:
        m = job.mutation
        if m.state is None:
            return DeliveryResult.permanent("the mutation carries no state", kind="bad_input")
        try:
            state = orjson.loads(m.state)
        except orjson.JSONDecodeError as exc:
            return DeliveryResult.permanent(f"the state is not JSON: {exc}", kind="bad_input")
        if not isinstance(state, dict):
            return DeliveryResult.permanent("the state is not a JSON object", kind="bad_input")
        etype = m.entity_type
        if etype == "product":
            if m.operation == "delete":
                return await delete_product(state, m.entity_key, api, mapping)
            return await self._products.upsert_product(job, state, api, mapping)
        if etype == "product_model":
            return await self._products.product_model(job, state, api, mapping)
        if etype == "category":
            return await self._categories.deliver(job, state, api, mapping)
        if etype == "attribute":
            return await attributes.attribute(job, state, mapping, self._refs)
        if etype == "attribute_option":
            return await attributes.attribute_option(job, state, api, mapping, self._opts)
        if etype == "family_variant":
            return await attributes.family_variant(job, state, mapping)
        if etype == "family":
            return attributes.family(state, api.config)
        return DeliveryResult.skipped(f"the Magento driver does not handle {etype!r}")


__all__ = ["Magento2Driver", "RetryableError"]
