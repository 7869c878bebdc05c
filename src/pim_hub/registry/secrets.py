"""Secrets in integration configs: which values are secret, and masking them for display."""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

#: Config keys whose values are never shown or published, whatever the driver's model says.
SECRET_KEY_RE = re.compile(
    r"secret|passw|token|api[_-]?key|credential|private[_-]?key|authorization|dsn", re.I
)
MASK = "********"


def _is_secret_type(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(_is_secret_type(a) for a in typing.get_args(annotation))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def secret_fields(model: type[BaseModel] | None) -> set[str]:
    """Names (and aliases) of a config model's SecretStr/SecretBytes fields."""
    if model is None:
        return set()
    names = set()
    for name, info in model.model_fields.items():
        if _is_secret_type(info.annotation):
            names.add(name)
            if info.alias:
                names.add(info.alias)
    return names


def mask_config(config: Any, model: type[BaseModel] | None = None) -> Any:
    """The config with every secret value replaced by a mask (null values stay null).

    Secret are the model's SecretStr/SecretBytes fields (nested models included) and any key
    whose name looks like a secret (password, token, api_key, authorization, dsn, ...).
    """
    if isinstance(config, list):
        return [mask_config(v, model) for v in config]
    if not isinstance(config, Mapping):
        return config
    secrets = secret_fields(model)
    fields = model.model_fields if model is not None else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        if value is not None and (key in secrets or SECRET_KEY_RE.search(str(key))):
            out[key] = MASK
            continue
        info = fields.get(key)
        out[key] = mask_config(value, _nested_model(info.annotation) if info else None)
    return out
