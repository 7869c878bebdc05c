"""Secrets in integration configs: which values are secret, and masking them for display."""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, SecretBytes, SecretStr

from pim_hub.runtime import sealing

#: Config keys whose values are never shown or published, whatever the driver's model says.
SECRET_KEY_RE = re.compile(
    r"secret|passw|token|api[_-]?key|credential|private[_-]?key|authorization|dsn"
    # OAuth 1.0a consumer keys sign requests like the secret beside them; cookies and
    # custom auth headers (X-Auth, X-Shop-Key) carry sessions and keys.
    r"|consumer[_-]?key|cookie|^x-auth|[-_]key$|signature",
    re.I,
)
MASK = "********"
#: Header names whose values are not secret; any other header value is masked (a webhook's
#: `headers` carry keys and sessions under names nobody can list in advance).
PLAIN_HEADERS: frozenset[str] = frozenset(
    {"accept", "accept-language", "content-type", "user-agent", "x-request-source", "x-source"}
)
#: Query parameters of a URL that carry credentials.
SECRET_QUERY_RE = re.compile(r"token|key|secret|sig|passw|auth|^code$|session", re.I)


def mask_url(value: str) -> str:
    """A URL with its credentials masked: user info and credential-like query values.

    Other text is returned as it is.
    """
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return value
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{host or ''}" + (f":{port}" if port else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, MASK if SECRET_QUERY_RE.search(k) else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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

    Secret are the model's SecretStr/SecretBytes fields (nested models included), any key
    whose name looks like a secret (password, token, api_key, authorization, dsn, consumer
    key, cookie, ...), every header value of a `headers` mapping but a few plain ones
    (Content-Type, Accept, ...), and the credentials inside URLs (user info, token query
    parameters).
    """
    if isinstance(config, list):
        return [mask_config(v, model) for v in config]
    if isinstance(config, str):
        return mask_url(config)
    if not isinstance(config, Mapping):
        return config
    secrets = secret_fields(model)
    fields = model.model_fields if model is not None else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        if value is not None and (key in secrets or SECRET_KEY_RE.search(str(key))):
            out[key] = MASK
            continue
        if str(key).lower() == "headers" and isinstance(value, Mapping):
            out[key] = {
                name: v if v is None or str(name).lower() in PLAIN_HEADERS else MASK
                for name, v in value.items()
            }
            continue
        info = fields.get(key)
        out[key] = mask_config(value, _nested_model(info.annotation) if info else None)
    return out


def _holds_credentials(text: str) -> bool:
    return mask_url(text) != text


def seal_config(config: Any, model: type[BaseModel] | None = None) -> Any:
    """The config with every secret value sealed (see pim_hub.runtime.sealing), for storage.

    The values sealed are the ones mask_config masks; a URL with credentials is sealed whole.
    Without HUB_SECRETS_KEY the config is returned as it is.
    """
    if not sealing.enabled():
        return config
    if isinstance(config, list):
        return [seal_config(v, model) for v in config]
    if isinstance(config, str):
        return sealing.seal(config) if _holds_credentials(config) else config
    if not isinstance(config, Mapping) or sealing.is_sealed(config):
        return config
    secrets = secret_fields(model)
    fields = model.model_fields if model is not None else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        if value is not None and (key in secrets or SECRET_KEY_RE.search(str(key))):
            out[key] = sealing.seal(value)
        elif str(key).lower() == "headers" and isinstance(value, Mapping):
            out[key] = {
                name: v if v is None or str(name).lower() in PLAIN_HEADERS else sealing.seal(v)
                for name, v in value.items()
            }
        else:
            info = fields.get(key)
            out[key] = seal_config(value, _nested_model(info.annotation) if info else None)
    return out


def unseal_config(config: Any) -> Any:
    """The config with every sealed value opened (what drivers and validation see).

    Raises:
        sealing.SealingError: a value is sealed and no configured key opens it.
    """
    if sealing.is_sealed(config):
        return sealing.unseal(config)
    if isinstance(config, list):
        return [unseal_config(v) for v in config]
    if isinstance(config, Mapping):
        return {k: unseal_config(v) for k, v in config.items()}
    return config
