"""Registry rules without a database: validation, secrets, declarative files, change reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pim_hub.drivers.discovery import DriverCatalogue
from pim_hub.drivers.log import LogDriver
from pim_hub.drivers.webhook.driver import WebhookDriver
from pim_hub.registry.changes import RegistryChange as Change
from pim_hub.registry.changes import changed_fields, integration_event
from pim_hub.registry.files import parse_integrations_file
from pim_hub.registry.model import Integration, IntegrationError
from pim_hub.registry.secrets import MASK, mask_config
from pim_hub.registry.validation import config_problems, validate
from tests.unit.registry.fake_drivers import FakeConfig, GoodDriver

CATALOGUE = DriverCatalogue(
    drivers={"webhook": WebhookDriver, "log": LogDriver, "fake-good": GoodDriver},
    broken={"magento9": "ImportError: No module named 'magento9_sdk'"},
)


def integ(**kw: Any) -> Integration:
    base: dict[str, Any] = {
        "id": "shop-eu",
        "name": "Shop EU",
        "driver": "webhook",
        "enabled": True,
        "config": {"url": "https://hooks.example.com/pim"},
        "entity_types": None,
        "priority_map": {},
    }
    base.update(kw)
    return Integration(**base)


def problems_of(i: Integration) -> list[str]:
    with pytest.raises(IntegrationError) as info:
        validate(CATALOGUE, i)
    return info.value.problems or [str(info.value)]


def test_a_valid_integration_passes() -> None:
    validate(CATALOGUE, integ())
    validate(CATALOGUE, integ(entity_types=["product"], priority_map={"attributes": {"x": "low"}}))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"config": {}}, ["config.url: Field required"]),
        ({"config": {"url": "not a url"}}, ["config.url: Input should be a valid URL"]),
        (
            {"config": {"url": "https://x.example", "ulr": "https://y", "timeout_s": 0}},
            ["config.timeout_s: Input should be greater than 0", "config.ulr: unknown field"],
        ),
        ({"config": ["https://x"]}, ["config.(config): must be an object"]),
        (
            {"entity_types": ["product", "invoice"]},
            ["entity_types: driver 'webhook' does not handle invoice"],
        ),
        ({"entity_types": []}, ["entity_types: empty"]),
        (
            {"priority_map": {"attributes": {"price": "asap"}}},
            ["priority_map.attributes.price: unknown priority 'asap'"],
        ),
        ({"name": " "}, ["name: empty"]),
        ({"id": "Shop EU"}, ["integration id 'Shop EU' must be lowercase"]),
        ({"driver": "magento9"}, ["integration shop-eu: driver 'magento9' failed to load"]),
        ({"driver": "sap"}, ["integration shop-eu: no driver 'sap'; installed drivers:"]),
    ],
)
def test_invalid_integrations_are_refused_with_every_bad_field(
    changes: dict[str, Any], expected: list[str]
) -> None:
    found = problems_of(integ(**changes))
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_refusals_never_echo_secret_values() -> None:
    bad = integ(
        driver="fake-good",
        config={"endpoint": 42, "api_secret": "s3cr3t-value", "account": {"user": "u"}},
    )
    text = str(IntegrationError("refused", problems_of(bad)))
    assert "account.password: Field required" in text
    assert "s3cr3t-value" not in text


def test_config_problems_of_the_log_driver() -> None:
    assert config_problems(LogDriver, {"dsn": "postgresql://h/db"}) == []
    assert config_problems(LogDriver, {}) == ["dsn: Field required"]


def test_masking_covers_secret_fields_and_secret_looking_keys() -> None:
    config = {
        "endpoint": "https://x",
        "api_secret": "abc",
        "account": {"user": "bob", "password": "pw"},
        "credentials": {"user": "bob"},
        "headers": {"Authorization": "Bearer t", "X-Trace": "1", "x-api-key": "k"},
        "access_token": None,
        "retries": 3,
        "nested": [{"client_secret": "z", "n": 1}],
    }
    masked = mask_config(config, FakeConfig)
    assert masked == {
        "endpoint": "https://x",
        "api_secret": MASK,
        "account": {"user": "bob", "password": MASK},
        "credentials": MASK,
        # Header values are masked unless the header is known to be plain (Content-Type...).
        "headers": {"Authorization": MASK, "X-Trace": MASK, "x-api-key": MASK},
        "access_token": None,
        "retries": 3,
        "nested": [{"client_secret": MASK, "n": 1}],
    }
    # The model's SecretStr fields are masked whatever they are called.
    assert (
        mask_config({"url": "https://x", "secret": "s"}, WebhookDriver.config_model)["secret"]
        == MASK
    )
    assert config["api_secret"] == "abc"  # the input is left alone


def test_change_event_masks_secrets_and_repr_hides_config() -> None:
    i = integ(driver="log", config={"dsn": "postgresql://u:pw@h/db"}, revision=4)
    event = integration_event(i, CATALOGUE)
    assert event["config"] == {"dsn": MASK}
    assert (event["schema"], event["id"], event["revision"]) == (
        "pim-hub.integration/1",
        "shop-eu",
        4,
    )
    assert "pw@h" not in repr(i)


def test_changed_fields_name_keys_never_values() -> None:
    old = integ(config={"url": "https://a", "headers": {"A": "1"}, "secret": "old-secret"})
    new = integ(
        enabled=False,
        config={"url": "https://b", "headers": {"A": "1", "B": "2"}, "secret": "new-secret"},
        entity_types=["product"],
        priority_map={"attributes": {"price": "low"}},
    )
    fields = changed_fields(old, new)
    assert fields == [
        "enabled",
        "entity_types",
        "config.headers.B",
        "config.secret",
        "config.url",
        "priority_map.attributes",
    ]
    line = Change("shop-eu", "updated", tuple(fields)).line()
    assert line.startswith("updated   shop-eu: enabled, entity_types, config.headers.B")
    assert "secret" not in line.replace("config.secret", "") and "https://b" not in line
    assert changed_fields(old, old) == []
    assert integ(entity_types=["b", "a"]).same_content(integ(entity_types=["a", "b"]))


FILE = {
    "integrations": [
        {
            "id": "shop-eu",
            "driver": "webhook",
            "config": {"url": "https://hooks.example.com/${SHOP}", "secret": "${SHOP_SECRET}"},
            "entity_types": ["product"],
        },
        {"id": "dry-run", "driver": "log", "config": {"dsn": "${LOG_DSN:-postgresql:///hub}"}},
    ]
}


def test_integrations_file_expands_environment_references() -> None:
    specs = parse_integrations_file(FILE, {"SHOP": "eu", "SHOP_SECRET": "s"})
    assert specs[0].config == {"url": "https://hooks.example.com/eu", "secret": "s"}
    assert specs[1].config == {"dsn": "postgresql:///hub"}
    assert specs[1].integration().name == "dry-run" and specs[1].enabled is True


@pytest.mark.parametrize(
    ("doc", "env", "message"),
    [
        (FILE, {"SHOP": "eu"}, "integrations[0].config.secret: environment variable SHOP_SECRET"),
        ({"integrations": [{"id": "a"}]}, {}, "integrations.0.driver: Field required"),
        ({"integrations": [{"id": "a", "driver": "log", "colour": 1}]}, {}, "colour: Extra inputs"),
        ({"integration": []}, {}, "integration: Extra inputs"),
        (
            {"integrations": [{"id": "a", "driver": "log"}, {"id": "a", "driver": "log"}]},
            {},
            "more than once",
        ),
        (["a"], {}, "must be a mapping"),
    ],
)
def test_malformed_integrations_files_are_refused(
    doc: Any, env: dict[str, str], message: str
) -> None:
    with pytest.raises(IntegrationError) as info:
        parse_integrations_file(doc, env)
    assert message in str(info.value)


def test_the_example_file_is_valid() -> None:
    path = Path(__file__).resolve().parents[3] / "examples" / "integrations.yaml"
    env = {"STOREFRONT_WEBHOOK_SECRET": "s", "HUB_DATABASE_URL": "postgresql:///hub"}
    specs = parse_integrations_file(yaml.safe_load(path.read_text()), env)
    assert [s.id for s in specs] == ["storefront-webhook", "dry-run-log"]
    for spec in specs:
        validate(CATALOGUE, spec.integration())
