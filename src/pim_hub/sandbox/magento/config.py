"""Seed data of the Magento sandbox: websites, store views and product attributes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Website:
    """A Magento website (`store_website`); each has one store group in the sandbox."""

    id: int
    code: str
    name: str
    default_group_id: int = 1
    base_currency: str = "EUR"


@dataclass(frozen=True)
class StoreView:
    """A Magento store view (`store`), the scope of localised values."""

    id: int
    code: str
    name: str
    website_id: int = 1
    store_group_id: int = 1
    locale: str = "en_US"
    is_active: int = 1


@dataclass(frozen=True)
class AttributeSeed:
    """A product attribute that exists before any request (Magento has no API-less attributes)."""

    code: str
    attribute_id: int
    frontend_input: str = "select"
    label: str = ""
    scope: str = "global"  # "global" or "store"; website scope behaves as "store" here
    options: tuple[str, ...] = ()


# Attributes whose scope is global in a stock Magento: a write through a store-view URL still
# lands in the admin (store 0) value, which is why drivers send them to `all`.
DEFAULT_GLOBAL_ATTRIBUTES: frozenset[str] = frozenset({"price", "weight", "special_price", "cost"})


@dataclass(frozen=True)
class SandboxConfig:
    """What the sandbox Magento looks like before the first request.

    Attributes:
        websites: websites besides the admin website 0.
        store_views: store views besides the admin store 0; the one coded `default` (else the
            first) is what `/rest/V1/...` and `/rest/default/V1/...` address.
        attributes: select/multiselect attributes that accept options.
        global_attributes: attribute codes written to store 0 whatever the URL scope.
        auto_create_attributes: create an unknown attribute on its first option POST instead of
            answering 404 (handy for demos whose attributes come from Akeneo).
        bulk_delay: seconds an async bulk operation stays open (status 4) before the simulated
            `async.operations.all` consumer processes it; 0 processes it at once.
        bulk_auto: False keeps operations open until `state.run_bulk_consumer()` is called, like a
            Magento whose consumers are not running.
        weight_unit: `kgs` or `lbs`, reported by `/V1/store/storeConfigs`.
        media_base_url: base of the media URLs reported by `/V1/store/storeConfigs`.
    """

    websites: tuple[Website, ...] = (Website(1, "base", "Main Website"),)
    store_views: tuple[StoreView, ...] = (
        StoreView(1, "default", "Default Store View", locale="en_US"),
        StoreView(2, "fr", "French Store View", locale="fr_FR"),
        StoreView(3, "de", "German Store View", locale="de_DE"),
    )
    attributes: tuple[AttributeSeed, ...] = (
        AttributeSeed("color", 93, "select", "Color"),
        AttributeSeed("size", 144, "select", "Size"),
        AttributeSeed("manufacturer", 83, "select", "Manufacturer"),
        AttributeSeed("material", 150, "multiselect", "Material", scope="store"),
    )
    global_attributes: frozenset[str] = field(default=DEFAULT_GLOBAL_ATTRIBUTES)
    auto_create_attributes: bool = False
    bulk_delay: float = 0.0
    bulk_auto: bool = True
    weight_unit: str = "kgs"
    media_base_url: str = "http://magento.test/"
