"""The Avro forms of the canonical entities (src/pim_hub/schemas/avro/entities) agree with the pydantic models."""

from __future__ import annotations

import io
import json
import types
import typing
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from pydantic import BaseModel

from pim_hub.schemas.entities import ENTITY_MODELS, Locale

ENTITIES_DIR = (
    Path(__file__).resolve().parents[2] / "src" / "pim_hub" / "schemas" / "avro" / "entities"
)
NAMESPACE = "pimhub.entities.v1"

# Mapping rules (the contract the .avsc files follow):
#   str/bool/int/float -> string/boolean/long/double;  X | None -> ["null", X] (default null)
#   list[T] -> array;  dict[str, T] -> map;  a nested model -> a named record
#   dict[str, Any] (free JSON: table settings) -> JSON text in a string; Any -> the same or null
_PRIMITIVES: dict[Any, str] = {str: "string", bool: "boolean", int: "long", float: "double"}


def _avro_type(annotation: Any, named: set[str]) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return ["null", "string"]
    if annotation in _PRIMITIVES:
        return _PRIMITIVES[annotation]
    if origin in (types.UnionType, typing.Union):
        branches = [a for a in args if a is not type(None)]
        out = ["null"] if type(None) in args else []
        out += [_avro_type(a, named) for a in branches]
        return out
    if origin is list:
        return {"type": "array", "items": _avro_type(args[0], named)}
    if origin is dict:
        if args[1] is Any:
            return "string"
        return {"type": "map", "values": _avro_type(args[1], named)}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _record(annotation, named)
    raise TypeError(f"no Avro mapping for {annotation!r}")


def _record(model: type[BaseModel], named: set[str]) -> Any:
    if model.__name__ in named:
        return f"{NAMESPACE}.{model.__name__}"
    named.add(model.__name__)
    fields = []
    for name, info in model.model_fields.items():
        avro = _avro_type(info.annotation, named)
        fld: dict[str, Any] = {"name": name, "type": avro}
        if not info.is_required():
            default = info.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                raise TypeError("model defaults are not mapped")
            fld["default"] = default
        fields.append(fld)
    return {"type": "record", "name": model.__name__, "namespace": NAMESPACE, "fields": fields}


def expected_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The Avro schema the mapping rules give for a model."""
    schema: dict[str, Any] = _record(model, set())
    return schema


def _strip_docs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_docs(v) for k, v in value.items() if k != "doc"}
    if isinstance(value, list):
        return [_strip_docs(v) for v in value]
    return value


def _load(entity_type: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((ENTITIES_DIR / f"{entity_type}.avsc").read_text())
    return schema


def to_avro_record(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """A validated payload in its Avro form (free JSON becomes JSON text)."""
    entity = model.model_validate(data)
    return _convert(type(entity), entity.model_dump(exclude=set(entity.model_extra or {})))


def _convert_value(annotation: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return orjson.dumps(value).decode()
    if origin in (types.UnionType, typing.Union):
        branches = [a for a in args if a is not type(None)]
        if len(branches) == 1:
            return _convert_value(branches[0], value)
        return value
    if origin is list:
        return [_convert_value(args[0], v) for v in value]
    if origin is dict:
        if args[1] is Any:
            return orjson.dumps(value).decode()
        return {k: _convert_value(args[1], v) for k, v in value.items()}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _convert(annotation, value)
    return value


def _convert(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _convert_value(info.annotation, data.get(name))
        for name, info in model.model_fields.items()
    }


def test_every_entity_type_has_an_avro_schema_and_nothing_else_is_there() -> None:
    assert {p.stem for p in ENTITIES_DIR.glob("*.avsc")} == set(ENTITY_MODELS)


@pytest.mark.parametrize("entity_type", sorted(ENTITY_MODELS))
def test_avro_schema_matches_the_pydantic_model(entity_type: str) -> None:
    on_disk = _load(entity_type)
    assert _strip_docs(on_disk) == expected_schema(ENTITY_MODELS[entity_type])
    fastavro.parse_schema(on_disk)  # and it is a valid schema


def test_a_field_added_to_a_model_would_be_caught() -> None:
    class Widened(Locale):
        label: str | None = None

    Widened.__name__ = "Locale"
    assert _strip_docs(_load("locale")) != expected_schema(Widened)


SAMPLES: dict[str, dict[str, Any]] = {
    "product": {
        "uuid": "0a9d6b52-3c9e-4c0a-9a4f-8f5b3e0c9d11",
        "identifier": "SKU-1",
        "enabled": True,
        "family": "shoes",
        "categories": ["men"],
        "groups": [],
        "parent": None,
        "values": {
            "name": [{"locale": "en_US", "scope": None, "data": "Runner"}],
            "price": [
                {
                    "locale": None,
                    "scope": "web",
                    "data": [{"amount": "10.5000", "currency": "EUR"}],
                    "attribute_type": "pim_catalog_price_collection",
                }
            ],
        },
        "associations": {"X_SELL": {"products": ["SKU-2"], "product_models": [], "groups": []}},
        "quantified_associations": {
            "PACK": {"products": [{"identifier": "SKU-3", "quantity": 2}], "product_models": []}
        },
        "updated": "2024-05-01T10:00:00+00:00",
    },
    "product_model": {"code": "runner", "family_variant": "by_size", "values": {}},
    "category": {
        "code": "men",
        "parent": "master",
        "labels": {"en_US": "Men"},
        "values": {"desc|96b8|en_US": {"data": "<p>x</p>", "type": "textarea", "locale": "en_US"}},
    },
    "family": {"code": "shoes", "attributes": ["sku"], "attribute_requirements": {"web": ["sku"]}},
    "family_variant": {
        "code": "by_size",
        "variant_attribute_sets": [{"level": 1, "axes": ["size"], "attributes": ["size"]}],
    },
    "attribute": {
        "code": "weight",
        "type": "pim_catalog_metric",
        "metric_family": "Weight",
        "decimal_places": 2,
        "table_configuration": [{"code": "ingredient", "data_type": "select"}],
    },
    "attribute_option": {"code": "red", "attribute": "color", "sort_order": 1},
    "channel": {"code": "web", "locales": ["en_US"], "conversion_units": {"weight": "GRAM"}},
    "locale": {"code": "en_US", "enabled": True},
}


@pytest.mark.parametrize("entity_type", sorted(ENTITY_MODELS))
def test_a_canonical_entity_round_trips_through_its_avro_form(entity_type: str) -> None:
    schema = fastavro.parse_schema(_load(entity_type))
    record = to_avro_record(ENTITY_MODELS[entity_type], SAMPLES[entity_type])
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    back = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), schema, None)
    assert back == record
