"""searchCriteria filters and sort orders applied to product rows, as Magento's SQL would."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pim_hub.sandbox.magento.errors import bad_request


def _field(row: dict[str, Any], name: str) -> Any:
    if name in ("entity_id",):
        name = "id"
    if name in row:
        return row[name]
    for attr in row.get("custom_attributes", []):
        if attr["attribute_code"] == name:
            return attr["value"]
    if name == "category_id":
        return [link["category_id"] for link in row["extension_attributes"]["category_links"]]
    return None


def sort_by(name: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    """Sort key for a product row field (None first, then numbers, then text)."""

    def key(row: dict[str, Any]) -> tuple[int, Any]:
        return _sort_key(_field(row, name))

    return key


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, value)
    return (2, str(value))


def _like(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in pattern.split("%")]
    return re.compile("^" + ".*".join(parts) + "$", re.IGNORECASE | re.DOTALL)


def _cmp_values(left: Any, right: str) -> tuple[Any, Any]:
    try:
        return float(left), float(right)
    except (TypeError, ValueError):
        return str(left), right


def matches(row: dict[str, Any], flt: dict[str, Any]) -> bool:
    """One searchCriteria filter against a product row (string semantics as in SQL on EAV)."""
    value = _field(row, str(flt.get("field", "")))
    wanted = str(flt.get("value", ""))
    cond = str(flt.get("condition_type") or "eq").lower()
    if isinstance(value, list):
        # Multi-valued fields (category_id) match when any of their values does.
        return any(matches({"v": v}, {**flt, "field": "v"}) for v in value)
    if cond == "null":
        return value is None
    if cond == "notnull":
        return value is not None
    if value is None:
        return cond in ("neq", "nin", "nlike")
    text = str(value)
    if cond == "eq":
        left, right = _cmp_values(value, wanted)
        return bool(left == right)
    if cond == "neq":
        return text != wanted
    if cond == "like":
        return bool(_like(wanted).match(text))
    if cond == "nlike":
        return not _like(wanted).match(text)
    if cond in ("in", "nin"):
        found = text in [w.strip() for w in wanted.split(",")]
        return found if cond == "in" else not found
    if cond == "finset":
        return wanted in text.split(",")
    if cond in ("gt", "gteq", "lt", "lteq", "from", "to"):
        left, right = _cmp_values(value, wanted)
        outcome: dict[str, bool] = {
            "gt": left > right,
            "gteq": left >= right,
            "from": left >= right,
            "lt": left < right,
            "lteq": left <= right,
            "to": left <= right,
        }
        return outcome[cond]
    raise bad_request(
        'Invalid value of "%value" provided for the %fieldName field.',
        {
            "value": cond,
            "fieldName": "condition_type",
        },
    )
