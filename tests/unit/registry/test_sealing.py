"""Secrets sealed at rest: which values, rotation, and a clear error without the key."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from pim_hub.drivers.webhook.driver import WebhookDriver
from pim_hub.registry.secrets import seal_config, unseal_config
from pim_hub.runtime import sealing


@pytest.fixture(autouse=True)
def _no_key_after() -> Iterator[None]:
    yield
    sealing.configure(None)  # the keys are process-wide: leave none behind


CONFIG = {
    "url": "https://hooks.example.com/in",
    "secret": "s3cr3t",
    "headers": {"X-Shop-Key": "k-123", "Content-Type": "application/json"},
    "callback": "https://user:PASS@example.com/cb",
    "timeout_s": 5,
}


def test_without_a_key_configs_are_stored_as_written() -> None:
    sealing.configure(None)
    assert seal_config(CONFIG, WebhookDriver.config_model) == CONFIG


def test_secret_values_are_sealed_and_open_again() -> None:
    sealing.configure(sealing.new_key())
    sealed = seal_config(CONFIG, WebhookDriver.config_model)
    stored = orjson.dumps(sealed).decode()
    for secret in ("s3cr3t", "k-123", "PASS"):
        assert secret not in stored, secret
    # What is not secret stays readable in the database.
    assert sealed["url"] == CONFIG["url"] and sealed["timeout_s"] == 5
    assert sealed["headers"]["Content-Type"] == "application/json"
    assert sealing.is_sealed(sealed["secret"])
    assert unseal_config(sealed) == CONFIG


def test_a_rotated_key_still_opens_old_values() -> None:
    old, new = sealing.new_key(), sealing.new_key()
    sealing.configure(old)
    sealed = seal_config(CONFIG)
    sealing.configure(f"{new},{old}")
    assert unseal_config(sealed) == CONFIG
    resealed = seal_config(unseal_config(sealed))
    sealing.configure(new)  # the old key gone: what was resealed opens
    assert unseal_config(resealed) == CONFIG
    with pytest.raises(sealing.SealingError, match="does not open"):
        unseal_config(sealed)


def test_a_sealed_value_without_a_key_is_a_clear_error() -> None:
    sealing.configure(sealing.new_key())
    sealed = seal_config(CONFIG)
    sealing.configure(None)
    with pytest.raises(sealing.SealingError, match="HUB_SECRETS_KEY is not set"):
        unseal_config(sealed)


def test_a_malformed_key_is_refused() -> None:
    with pytest.raises(sealing.SealingError, match="Fernet"):
        sealing.configure("not-a-key")
