"""Canonical (frozen pydantic) models of every Akeneo entity type and their entity keys."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pim_hub.schemas.errors import InvalidSnapshot
from pim_hub.schemas.limits import has_control


class _Entity(BaseModel):
    # Akeneo adds fields over time (quality_scores, metadata, ...): keep them rather than fail,
    # the normaliser treats unknown fields as opaque JSON.
    model_config = ConfigDict(frozen=True, extra="allow", strict=True)


class ProductValue(_Entity):
    """One value of an attribute for one (locale, scope); `data=None` means removed."""

    locale: str | None = None
    scope: str | None = None
    data: Any = None
    attribute_type: str | None = None


class Association(_Entity):
    """Targets of one association type."""

    groups: list[str] = Field(default_factory=list)
    products: list[str] = Field(default_factory=list)
    product_models: list[str] = Field(default_factory=list)


class QuantifiedTarget(_Entity):
    """A product (uuid or identifier) or product model (code) with a quantity."""

    uuid: str | None = None
    identifier: str | None = None
    code: str | None = None
    quantity: int


class QuantifiedAssociation(_Entity):
    """Targets of one quantified association type."""

    products: list[QuantifiedTarget] = Field(default_factory=list)
    product_models: list[QuantifiedTarget] = Field(default_factory=list)


class Product(_Entity):
    """A product (products-uuid shape; `identifier` present on the legacy endpoint)."""

    uuid: str | None = None
    identifier: str | None = None
    enabled: bool = True
    family: str | None = None
    categories: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    parent: str | None = None
    values: dict[str, list[ProductValue]] = Field(default_factory=dict)
    associations: dict[str, Association] = Field(default_factory=dict)
    quantified_associations: dict[str, QuantifiedAssociation] = Field(default_factory=dict)
    created: str | None = None
    updated: str | None = None


class ProductModel(_Entity):
    """A product model (root or sub model)."""

    code: str
    family: str | None = None
    family_variant: str | None = None
    parent: str | None = None
    categories: list[str] = Field(default_factory=list)
    values: dict[str, list[ProductValue]] = Field(default_factory=dict)
    associations: dict[str, Association] = Field(default_factory=dict)
    quantified_associations: dict[str, QuantifiedAssociation] = Field(default_factory=dict)
    created: str | None = None
    updated: str | None = None


class CategoryValue(_Entity):
    """A category attribute value (Akeneo 7 / SaaS enriched categories)."""

    data: Any = None
    type: str | None = None
    locale: str | None = None
    channel: str | None = None
    attribute_code: str | None = None


class Category(_Entity):
    """A category; `parent` is None for a tree root, `position` only with `with_position`."""

    code: str
    parent: str | None = None
    position: int | None = None
    labels: dict[str, str | None] = Field(default_factory=dict)
    values: dict[str, CategoryValue] | None = None
    channel_requirements: list[str] | None = None
    updated: str | None = None


class Family(_Entity):
    """A family: its attributes, requirements per channel and label/image attributes."""

    code: str
    attribute_as_label: str | None = None
    attribute_as_image: str | None = None
    attributes: list[str] = Field(default_factory=list)
    attribute_requirements: dict[str, list[str]] = Field(default_factory=dict)
    labels: dict[str, str | None] = Field(default_factory=dict)


class VariantAttributeSet(_Entity):
    """Attributes and axes of one enrichment level of a family variant."""

    level: int
    axes: list[str] = Field(default_factory=list)
    attributes: list[str] = Field(default_factory=list)


class FamilyVariant(_Entity):
    """A family variant."""

    code: str
    family: str | None = None
    common_attributes: list[str] = Field(default_factory=list)
    variant_attribute_sets: list[VariantAttributeSet] = Field(default_factory=list)
    labels: dict[str, str | None] = Field(default_factory=dict)


class Attribute(_Entity):
    """An attribute and its type-specific settings."""

    code: str
    type: str
    group: str | None = None
    labels: dict[str, str | None] = Field(default_factory=dict)
    group_labels: dict[str, str | None] = Field(default_factory=dict)
    sort_order: int | None = None
    localizable: bool = False
    scopable: bool = False
    unique: bool = False
    available_locales: list[str] = Field(default_factory=list)
    useable_as_grid_filter: bool | None = None
    max_characters: int | None = None
    validation_rule: str | None = None
    validation_regexp: str | None = None
    wysiwyg_enabled: bool | None = None
    number_min: str | None = None
    number_max: str | None = None
    decimals_allowed: bool | None = None
    negative_allowed: bool | None = None
    metric_family: str | None = None
    default_metric_unit: str | None = None
    date_min: str | None = None
    date_max: str | None = None
    allowed_extensions: list[str] = Field(default_factory=list)
    max_file_size: str | None = None
    reference_data_name: str | None = None
    default_value: bool | None = None
    table_configuration: list[dict[str, Any]] | None = None
    is_main_identifier: bool | None = None
    is_mandatory: bool | None = None
    decimal_places_strategy: str | None = None
    decimal_places: int | float | None = None


class AttributeOption(_Entity):
    """An option of a simple/multi select attribute."""

    code: str
    attribute: str
    sort_order: int | None = None
    labels: dict[str, str | None] = Field(default_factory=dict)


class Channel(_Entity):
    """A channel (scope)."""

    code: str
    locales: list[str] = Field(default_factory=list)
    currencies: list[str] = Field(default_factory=list)
    category_tree: str | None = None
    conversion_units: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str | None] = Field(default_factory=dict)


class Locale(_Entity):
    """A locale."""

    code: str
    enabled: bool = False


ENTITY_MODELS: Final[dict[str, type[_Entity]]] = {
    "product": Product,
    "product_model": ProductModel,
    "category": Category,
    "family": Family,
    "family_variant": FamilyVariant,
    "attribute": Attribute,
    "attribute_option": AttributeOption,
    "channel": Channel,
    "locale": Locale,
}

ENTITY_TYPES: Final[frozenset[str]] = frozenset(ENTITY_MODELS)


def _identity(entity_type: str, payload: dict[str, Any], field: str) -> str:
    value = payload.get(field)
    if value is None:
        raise InvalidSnapshot(f"missing '{field}'", entity_type=entity_type)
    if not isinstance(value, str):
        raise InvalidSnapshot(
            f"'{field}' must be a string, got {type(value).__name__}", entity_type=entity_type
        )
    if not value or "|" in value or value != value.strip():
        # An empty or padded code would produce a key that no later snapshot matches.
        raise InvalidSnapshot(f"'{field}' is not a valid code: {value!r}", entity_type=entity_type)
    if has_control(value):
        # NUL breaks every PostgreSQL write of the key; CR/LF/ESC forge logs and terminals.
        raise InvalidSnapshot(
            f"'{field}' contains a control character: {value[:80]!r}",
            entity_type=entity_type,
            code="control_character",
        )
    return value


def entity_key(entity_type: str, payload: dict[str, Any]) -> str:
    """Return the partitioning key `"<entity_type>:<code or uuid>"` of an Akeneo payload.

    Products are keyed by uuid (Akeneo 7 / SaaS) and fall back to the identifier for the
    legacy endpoint; attribute options are keyed `attribute_option:<attribute>.<code>`.

    Args:
        entity_type: one of ENTITY_TYPES.
        payload: the Akeneo JSON object (only the identity fields are read).

    Returns:
        The entity key.

    Raises:
        InvalidSnapshot: unknown entity type, payload not an object, identity missing or mistyped.
    """
    if entity_type not in ENTITY_TYPES:
        raise InvalidSnapshot(f"unknown entity type {entity_type!r}")
    if not isinstance(payload, dict):
        raise InvalidSnapshot(
            f"payload must be a JSON object, got {type(payload).__name__}", entity_type=entity_type
        )
    if entity_type == "product":
        if payload.get("uuid") is not None:
            return f"product:{_identity(entity_type, payload, 'uuid')}"
        if payload.get("identifier") is not None:
            return f"product:{_identity(entity_type, payload, 'identifier')}"
        raise InvalidSnapshot("missing both 'uuid' and 'identifier'", entity_type=entity_type)
    if entity_type == "attribute_option":
        attribute = _identity(entity_type, payload, "attribute")
        return f"attribute_option:{attribute}.{_identity(entity_type, payload, 'code')}"
    return f"{entity_type}:{_identity(entity_type, payload, 'code')}"


def parse_entity(entity_type: str, payload: dict[str, Any]) -> _Entity:
    """Validate a payload against its canonical model (strict types, unknown fields kept).

    Raises:
        InvalidSnapshot: unknown entity type or a payload that does not match the model.
    """
    model = ENTITY_MODELS.get(entity_type)
    if model is None:
        raise InvalidSnapshot(f"unknown entity type {entity_type!r}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise InvalidSnapshot(f"{where}: {first['msg']}", entity_type=entity_type) from exc
