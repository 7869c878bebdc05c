"""Static reference data of the sandbox catalogue: locales, channels, attributes, families."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

LOCALES: Final = ("en_US", "fr_FR", "de_DE")
CURRENCIES: Final = ("EUR", "USD")
# mobile shows a smaller locale set so scoped values differ per channel, as in real catalogues.
CHANNELS: Final = {
    "ecommerce": {"locales": list(LOCALES), "currencies": list(CURRENCIES)},
    "mobile": {"locales": ["en_US", "fr_FR"], "currencies": ["EUR"]},
}

IDENTIFIER: Final = "pim_catalog_identifier"
TEXT: Final = "pim_catalog_text"
TEXTAREA: Final = "pim_catalog_textarea"
NUMBER: Final = "pim_catalog_number"
BOOLEAN: Final = "pim_catalog_boolean"
DATE: Final = "pim_catalog_date"
SIMPLE: Final = "pim_catalog_simpleselect"
MULTI: Final = "pim_catalog_multiselect"
PRICE: Final = "pim_catalog_price_collection"
METRIC: Final = "pim_catalog_metric"
IMAGE: Final = "pim_catalog_image"


@dataclass(frozen=True)
class AttributeDef:
    """One attribute of the catalogue; `metric` is (family, default unit) for metrics."""

    code: str
    type: str
    group: str
    localizable: bool = False
    scopable: bool = False
    decimals: bool = False
    unique: bool = False
    metric: tuple[str, str] | None = None
    options: tuple[str, ...] = field(default=())


_COLORS = (
    "black",
    "white",
    "red",
    "blue",
    "green",
    "yellow",
    "grey",
    "navy",
    "beige",
    "brown",
    "pink",
    "purple",
)
_SIZES = ("xs", "s", "m", "l", "xl", "xxl")
_SHOE_SIZES = tuple(f"eu_{n}" for n in range(36, 47))
_BRANDS = (
    "acme",
    "northwind",
    "contoso",
    "fabrikam",
    "globex",
    "initech",
    "umbrella",
    "stark",
    "wayne",
    "tyrell",
    "cyberdyne",
    "hooli",
    "vandelay",
    "wonka",
    "oscorp",
    "soylent",
    "aperture",
    "monarch",
    "gringotts",
    "duff",
)

ATTRIBUTES: Final[tuple[AttributeDef, ...]] = (
    AttributeDef("sku", IDENTIFIER, "general", unique=True),
    AttributeDef("name", TEXT, "marketing", localizable=True),
    AttributeDef("description", TEXTAREA, "marketing", localizable=True, scopable=True),
    AttributeDef("short_description", TEXTAREA, "marketing", localizable=True),
    AttributeDef("meta_title", TEXT, "seo", localizable=True),
    AttributeDef("meta_description", TEXTAREA, "seo", localizable=True),
    AttributeDef("url_key", TEXT, "seo", localizable=True),
    AttributeDef("price", PRICE, "pricing", decimals=True),
    AttributeDef("msrp", PRICE, "pricing", decimals=True),
    AttributeDef("special_price", PRICE, "pricing", scopable=True, decimals=True),
    AttributeDef("tax_class", SIMPLE, "pricing", options=("standard", "reduced", "zero")),
    AttributeDef("weight", METRIC, "logistics", decimals=True, metric=("Weight", "KILOGRAM")),
    AttributeDef("package_weight", METRIC, "logistics", decimals=True, metric=("Weight", "GRAM")),
    AttributeDef("length", METRIC, "logistics", decimals=True, metric=("Length", "CENTIMETER")),
    AttributeDef("width", METRIC, "logistics", decimals=True, metric=("Length", "CENTIMETER")),
    AttributeDef("height", METRIC, "logistics", decimals=True, metric=("Length", "CENTIMETER")),
    AttributeDef("volume", METRIC, "logistics", decimals=True, metric=("Volume", "LITER")),
    AttributeDef("image", IMAGE, "media"),
    AttributeDef("thumbnail", IMAGE, "media"),
    AttributeDef("brand", SIMPLE, "general", options=_BRANDS),
    AttributeDef("color", SIMPLE, "variation", options=_COLORS),
    AttributeDef("size", SIMPLE, "variation", options=_SIZES),
    AttributeDef("shoe_size", SIMPLE, "variation", options=_SHOE_SIZES),
    AttributeDef(
        "material",
        MULTI,
        "technical",
        options=(
            "cotton",
            "polyester",
            "wool",
            "leather",
            "silk",
            "linen",
            "wood",
            "metal",
            "plastic",
            "glass",
            "ceramic",
            "bamboo",
        ),
    ),
    AttributeDef("season", MULTI, "marketing", options=("spring", "summer", "autumn", "winter")),
    AttributeDef("gender", SIMPLE, "general", options=("men", "women", "unisex", "kids")),
    AttributeDef(
        "country_of_origin",
        SIMPLE,
        "general",
        options=("fr", "de", "it", "es", "cn", "vn", "pt", "us", "in", "tr"),
    ),
    AttributeDef(
        "care_instructions",
        MULTI,
        "technical",
        options=("machine_wash", "hand_wash", "dry_clean", "tumble_dry", "iron_low"),
    ),
    AttributeDef("ean", TEXT, "general", unique=True),
    AttributeDef("mpn", TEXT, "general"),
    AttributeDef("release_date", DATE, "marketing"),
    AttributeDef("end_of_life_date", DATE, "marketing"),
    AttributeDef("is_new", BOOLEAN, "marketing"),
    AttributeDef("is_featured", BOOLEAN, "marketing", scopable=True),
    AttributeDef("is_eco_friendly", BOOLEAN, "technical"),
    AttributeDef("waterproof", BOOLEAN, "technical"),
    AttributeDef("warranty_years", NUMBER, "technical"),
    AttributeDef("stock_threshold", NUMBER, "logistics"),
    AttributeDef("rating", NUMBER, "marketing", decimals=True),
    AttributeDef("power_watts", METRIC, "technical", decimals=True, metric=("Power", "WATT")),
    AttributeDef("battery_included", BOOLEAN, "technical"),
    AttributeDef("screen_size", METRIC, "technical", decimals=True, metric=("Length", "INCH")),
    AttributeDef("resolution", SIMPLE, "technical", options=("hd", "full_hd", "uhd_4k", "uhd_8k")),
    AttributeDef(
        "connectivity",
        MULTI,
        "technical",
        options=("wifi", "bluetooth", "usb_c", "nfc", "ethernet", "hdmi"),
    ),
    AttributeDef("storage_capacity", NUMBER, "technical"),
    AttributeDef("processor", TEXT, "technical"),
    AttributeDef("assembly_required", BOOLEAN, "technical"),
    AttributeDef("max_load", METRIC, "technical", decimals=True, metric=("Weight", "KILOGRAM")),
    AttributeDef(
        "room",
        MULTI,
        "marketing",
        options=("living_room", "bedroom", "kitchen", "office", "bathroom", "outdoor"),
    ),
    AttributeDef(
        "style",
        SIMPLE,
        "marketing",
        options=("modern", "classic", "industrial", "scandinavian", "vintage"),
    ),
    AttributeDef(
        "pattern", SIMPLE, "marketing", options=("plain", "striped", "checked", "floral", "printed")
    ),
    AttributeDef("fit", SIMPLE, "technical", options=("slim", "regular", "loose")),
    AttributeDef("sleeve_length", SIMPLE, "technical", options=("short", "long", "sleeveless")),
    AttributeDef(
        "heel_height", METRIC, "technical", decimals=True, metric=("Length", "CENTIMETER")
    ),
    AttributeDef("sole_material", SIMPLE, "technical", options=("rubber", "leather", "eva")),
    AttributeDef("author", TEXT, "general"),
    AttributeDef("isbn", TEXT, "general", unique=True),
    AttributeDef("page_count", NUMBER, "technical"),
    AttributeDef("min_age", NUMBER, "general"),
    AttributeDef("dishwasher_safe", BOOLEAN, "technical"),
)
ATTRIBUTE_BY_CODE: Final = {a.code: a for a in ATTRIBUTES}

_COMMON = (
    "sku",
    "name",
    "description",
    "short_description",
    "meta_title",
    "meta_description",
    "url_key",
    "price",
    "msrp",
    "special_price",
    "tax_class",
    "weight",
    "package_weight",
    "image",
    "thumbnail",
    "ean",
    "release_date",
    "end_of_life_date",
    "is_new",
    "is_featured",
    "country_of_origin",
    "rating",
    "stock_threshold",
    "brand",
)


@dataclass(frozen=True)
class VariantDef:
    """A family variant: level 1 (and optional level 2) axes and the attributes set there."""

    code: str
    level1_axes: tuple[str, ...]
    level1_attributes: tuple[str, ...]
    level2_axes: tuple[str, ...] = ()
    level2_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FamilyDef:
    """A family: its attributes, category branch, noun for generated names, variants."""

    code: str
    attributes: tuple[str, ...]
    categories: tuple[str, ...]
    nouns: tuple[str, str, str]
    variants: tuple[VariantDef, ...] = ()


FAMILIES: Final[tuple[FamilyDef, ...]] = (
    FamilyDef(
        "clothing",
        (
            *_COMMON,
            "color",
            "size",
            "material",
            "season",
            "gender",
            "fit",
            "sleeve_length",
            "pattern",
            "care_instructions",
            "is_eco_friendly",
        ),
        ("men", "women", "kids", "sale"),
        ("Shirt", "Chemise", "Hemd"),
        (
            VariantDef(
                "clothing_color_size",
                ("color",),
                ("color", "image", "thumbnail"),
                ("size",),
                ("size", "sku", "ean", "price", "special_price", "weight", "stock_threshold"),
            ),
            VariantDef("clothing_size", ("size",), ("size", "sku", "ean", "price", "weight")),
        ),
    ),
    FamilyDef(
        "shoes",
        (
            *_COMMON,
            "color",
            "shoe_size",
            "material",
            "gender",
            "heel_height",
            "sole_material",
            "waterproof",
        ),
        ("sneakers", "boots", "sandals", "sale"),
        ("Sneaker", "Basket", "Turnschuh"),
        (VariantDef("shoes_size", ("shoe_size",), ("shoe_size", "sku", "ean", "price", "weight")),),
    ),
    FamilyDef(
        "electronics",
        (
            *_COMMON,
            "color",
            "power_watts",
            "battery_included",
            "screen_size",
            "resolution",
            "connectivity",
            "storage_capacity",
            "processor",
            "warranty_years",
            "mpn",
        ),
        ("audio", "computers", "phones", "tv"),
        ("Speaker", "Enceinte", "Lautsprecher"),
    ),
    FamilyDef(
        "furniture",
        (
            *_COMMON,
            "color",
            "material",
            "assembly_required",
            "max_load",
            "room",
            "style",
            "length",
            "width",
            "height",
        ),
        ("furniture", "decor", "sale"),
        ("Chair", "Chaise", "Stuhl"),
        (
            VariantDef(
                "furniture_color", ("color",), ("color", "sku", "ean", "image", "price", "weight")
            ),
        ),
    ),
    FamilyDef(
        "accessories",
        (*_COMMON, "color", "material", "gender", "style", "pattern"),
        ("bags", "jewelry", "watches"),
        ("Bag", "Sac", "Tasche"),
    ),
    FamilyDef(
        "books",
        (*_COMMON, "author", "isbn", "page_count", "min_age"),
        ("fiction", "non_fiction"),
        ("Novel", "Roman", "Roman"),
    ),
    FamilyDef(
        "toys",
        (*_COMMON, "min_age", "battery_included", "material", "is_eco_friendly", "color"),
        ("games", "outdoor_toys"),
        ("Puzzle", "Puzzle", "Puzzle"),
    ),
    FamilyDef(
        "kitchen",
        (*_COMMON, "material", "volume", "dishwasher_safe", "color", "power_watts"),
        ("kitchen", "decor"),
        ("Kettle", "Bouilloire", "Wasserkocher"),
    ),
)
FAMILY_BY_CODE: Final = {f.code: f for f in FAMILIES}
VARIANT_BY_CODE: Final = {v.code: (f, v) for f in FAMILIES for v in f.variants}

# Category tree: root -> branch -> leaves. Both channels use the `master` tree.
CATEGORY_TREE: Final[dict[str, tuple[str, ...]]] = {
    "master": ("apparel", "footwear", "tech", "home", "leisure", "promotions"),
    "apparel": ("men", "women", "kids", "bags", "jewelry", "watches"),
    "footwear": ("sneakers", "boots", "sandals"),
    "tech": ("audio", "computers", "phones", "tv"),
    "home": ("furniture", "decor", "kitchen"),
    "leisure": ("games", "outdoor_toys", "fiction", "non_fiction"),
    "promotions": ("sale", "new_arrivals"),
}

# Hand translations for the words a storefront shows most; other labels reuse English.
TRANSLATIONS: Final[dict[str, tuple[str, str]]] = {
    "black": ("Noir", "Schwarz"),
    "white": ("Blanc", "Weiß"),
    "red": ("Rouge", "Rot"),
    "blue": ("Bleu", "Blau"),
    "green": ("Vert", "Grün"),
    "yellow": ("Jaune", "Gelb"),
    "grey": ("Gris", "Grau"),
    "navy": ("Marine", "Marineblau"),
    "beige": ("Beige", "Beige"),
    "brown": ("Marron", "Braun"),
    "pink": ("Rose", "Rosa"),
    "purple": ("Violet", "Lila"),
    "name": ("Nom", "Name"),
    "description": ("Description", "Beschreibung"),
    "price": ("Prix", "Preis"),
    "weight": ("Poids", "Gewicht"),
    "color": ("Couleur", "Farbe"),
    "size": ("Taille", "Größe"),
    "clothing": ("Vêtements", "Kleidung"),
    "shoes": ("Chaussures", "Schuhe"),
    "master": ("Catalogue principal", "Hauptkatalog"),
}


def labels(code: str) -> dict[str, str]:
    """Labels of a code in the three catalogue locales."""
    english = code.replace("_", " ").capitalize()
    fr, de = TRANSLATIONS.get(code, (english, english))
    return {"en_US": english, "fr_FR": fr, "de_DE": de}
