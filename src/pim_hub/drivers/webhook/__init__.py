"""The webhook driver and the JSON Schema of the requests it sends (docs/webhook-driver.md)."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

#: The package resource holding the request body's JSON Schema (draft 2020-12).
PAYLOAD_SCHEMA_RESOURCE = "payload.schema.json"


def payload_schema() -> dict[str, Any]:
    """The JSON Schema every webhook request body validates against."""
    text = files(__package__).joinpath(PAYLOAD_SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
