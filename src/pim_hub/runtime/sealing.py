"""Secrets encrypted at rest with keys the operator provides (HUB_SECRETS_KEY).

A sealed value is the JSON object `{"$sealed": "<Fernet token>"}` (AES-128-CBC with
HMAC-SHA256, from the `cryptography` package). HUB_SECRETS_KEY holds one or more Fernet keys
separated by commas: the first seals, every one unseals, so a key is rotated by putting the new
one first and running `hub integrations reseal`. Entry points configure the keys once
(`configure`), from the settings; the registry seals what it writes and unseals what it reads.
"""

from __future__ import annotations

from typing import Any, Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

#: The key of a sealed value in JSON.
SEALED: Final = "$sealed"


class SealingError(ValueError):
    """A sealed value cannot be opened (no key configured, or not one of its keys)."""


_box: MultiFernet | None = None
_writer: Fernet | None = None


def new_key() -> str:
    """A fresh key for HUB_SECRETS_KEY."""
    return Fernet.generate_key().decode()


def configure(keys: str | None) -> None:
    """Use these comma-separated keys (None or empty: no sealing, values stay as written).

    Raises:
        SealingError: a key is not a Fernet key (32 url-safe base64 bytes).
    """
    global _box, _writer
    parts = [k.strip() for k in (keys or "").split(",") if k.strip()]
    if not parts:
        _box = _writer = None
        return
    try:
        fernets = [Fernet(k.encode()) for k in parts]
    except ValueError as exc:
        raise SealingError(
            "HUB_SECRETS_KEY must be Fernet keys (32 url-safe base64 bytes each); "
            "make one with `hub integrations new-key`"
        ) from exc
    _box, _writer = MultiFernet(fernets), fernets[0]


def enabled() -> bool:
    """True when a key is configured: secrets are sealed when written."""
    return _writer is not None


def is_sealed(value: Any) -> bool:
    """True for a sealed value."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SEALED), str)


def seal(value: Any) -> Any:
    """The value sealed (any JSON value), or as it is when no key is configured or it is null."""
    if _writer is None or value is None or is_sealed(value):
        return value
    import orjson

    return {SEALED: _writer.encrypt(orjson.dumps(value)).decode()}


def unseal(value: Any) -> Any:
    """The value a sealed value holds; any other value as it is.

    Raises:
        SealingError: no key configured, or none of the keys opens it.
    """
    if not is_sealed(value):
        return value
    if _box is None:
        raise SealingError("a secret is sealed but HUB_SECRETS_KEY is not set")
    import orjson

    try:
        return orjson.loads(_box.decrypt(value[SEALED].encode()))
    except InvalidToken as exc:
        raise SealingError("a sealed secret does not open with any key of HUB_SECRETS_KEY") from exc
