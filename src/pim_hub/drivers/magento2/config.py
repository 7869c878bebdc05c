"""Configuration model of the Magento 2 driver (one per integration)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, model_validator

# Akeneo attribute types the builder knows a transform for.
AKENEO_TYPES = frozenset(
    {
        "pim_catalog_identifier",
        "pim_catalog_text",
        "pim_catalog_textarea",
        "pim_catalog_number",
        "pim_catalog_boolean",
        "pim_catalog_date",
        "pim_catalog_simpleselect",
        "pim_catalog_multiselect",
        "pim_catalog_price_collection",
        "pim_catalog_metric",
        "pim_catalog_image",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdminTokenAuth(_Strict):
    """Admin user: a token from `POST /V1/integration/admin/token`, fetched again on 401."""

    kind: Literal["admin_token"] = "admin_token"
    username: str
    password: SecretStr


class IntegrationTokenAuth(_Strict):
    """Integration access token sent as Bearer (needs `enable_integration_as_bearer` = 1)."""

    kind: Literal["integration_token"] = "integration_token"
    token: SecretStr


class OAuth1Auth(_Strict):
    """Integration credentials; every request is signed with OAuth 1.0a HMAC-SHA256."""

    kind: Literal["oauth1"] = "oauth1"
    consumer_key: str
    consumer_secret: SecretStr
    access_token: str
    access_token_secret: SecretStr


Auth = Annotated[AdminTokenAuth | IntegrationTokenAuth | OAuth1Auth, Field(discriminator="kind")]


class WebsiteConfig(_Strict):
    """A Magento website fed from one Akeneo channel, and its store views."""

    code: str
    id: int = Field(gt=0)
    channel: str = Field(description="Akeneo channel whose scoped values this website gets")
    currency: str = Field(description="currency of `price` on this website (ISO 4217)")
    store_views: list[str] = Field(default_factory=list)


class AttributeRule(_Strict):
    """Maps one Akeneo attribute to one Magento field or custom attribute.

    `type` overrides the Akeneo type the driver knows; `unit` converts metrics (Magento weight
    uses the integration's `weight_unit` when unset); `roles` are the image roles of an image.
    """

    akeneo: str
    magento: str
    type: str | None = None
    unit: str | None = None
    roles: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_type(self) -> AttributeRule:
        if self.type is not None and self.type not in AKENEO_TYPES:
            raise ValueError(f"unknown Akeneo attribute type {self.type!r}")
        return self


def default_rules() -> list[AttributeRule]:
    """The mapping of a stock catalogue: names, texts, price and weight."""
    return [
        AttributeRule(akeneo="name", magento="name"),
        AttributeRule(akeneo="description", magento="description"),
        AttributeRule(akeneo="short_description", magento="short_description"),
        AttributeRule(akeneo="meta_title", magento="meta_title"),
        AttributeRule(akeneo="meta_description", magento="meta_description"),
        AttributeRule(akeneo="price", magento="price"),
        AttributeRule(akeneo="weight", magento="weight"),
    ]


class AkeneoMediaConfig(_Strict):
    """Where images are downloaded from: `<base_url>/api/rest/v1/media-files/<code>/download`."""

    base_url: HttpUrl
    client_id: str | None = None
    secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None


class Magento2Config(_Strict):
    """Everything the Magento 2 driver needs for one integration."""

    base_url: HttpUrl
    auth: Auth
    locales: dict[str, list[str]] = Field(
        default_factory=dict, description="Akeneo locale -> Magento store view codes"
    )
    admin_locale: str = Field("en_US", description="locale whose values become the admin values")
    websites: list[WebsiteConfig] = Field(default_factory=list)
    identifier_attribute: str = "sku"
    attributes: list[AttributeRule] = Field(default_factory=default_rules)
    map_unlisted_attributes: bool = Field(
        False, description="send attributes without a rule under their Akeneo code"
    )
    attribute_types: dict[str, str] = Field(
        default_factory=dict, description="declared Akeneo attribute types (highest precedence)"
    )
    attribute_sets: dict[str, int] = Field(
        default_factory=dict, description="Akeneo family -> Magento attribute_set_id"
    )
    default_attribute_set_id: int = 4
    visibility: int = Field(4, ge=1, le=4)
    variant_visibility: int = Field(1, ge=1, le=4)
    family_variant_axes: dict[str, list[str]] = Field(
        default_factory=dict, description="family variant -> axes (else learned from Akeneo)"
    )
    category_roots: dict[str, int] = Field(
        default_factory=dict, description="Akeneo category tree root -> Magento category id"
    )
    default_root_category_id: int = 2
    weight_unit: Literal["kgs", "lbs"] = "kgs"
    on_delete: Literal["disable", "delete"] = "disable"
    url_key_conflict: Literal["fail", "suffix"] = "fail"
    missing_reference: Literal["retry", "skip"] = Field(
        "retry", description="a category or parent not synced yet: retry later or leave it out"
    )
    reference_wait_s: float = Field(
        2.0,
        ge=0,
        description="how long a job waits for a category or parent model that is not mapped "
        "yet (usually being delivered right now) before it is retried later",
    )
    bulk: Literal["sync", "async"] = "sync"
    bulk_poll_interval_s: float = Field(0.2, gt=0)
    bulk_timeout_s: float = Field(60.0, gt=0)
    requests_per_second: float | None = Field(None, gt=0)
    max_concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    media: AkeneoMediaConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> Magento2Config:
        known = {v for w in self.websites for v in w.store_views}
        for locale, views in self.locales.items():
            unknown = [v for v in views if known and v not in known]
            if unknown:
                raise ValueError(f"locale {locale}: store views {unknown} belong to no website")
        for code, type_ in self.attribute_types.items():
            if type_ not in AKENEO_TYPES:
                raise ValueError(f"attribute {code}: unknown Akeneo type {type_!r}")
        return self

    @property
    def default_channel(self) -> str | None:
        """The channel whose values become the admin (global) values."""
        return self.websites[0].channel if self.websites else None

    @property
    def default_currency(self) -> str | None:
        """Currency of the global `price` (Magento's default price scope is global)."""
        return self.websites[0].currency if self.websites else None

    def store_views(self) -> dict[str, tuple[str, str | None]]:
        """Store view code -> (Akeneo locale, Akeneo channel of its website)."""
        channel_of = {v: w.channel for w in self.websites for v in w.store_views}
        out: dict[str, tuple[str, str | None]] = {}
        for locale, views in self.locales.items():
            for view in views:
                out[view] = (locale, channel_of.get(view, self.default_channel))
        return out
