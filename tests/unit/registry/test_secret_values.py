"""Masking by value, not only by key name: URL credentials, header values, OAuth keys."""

from __future__ import annotations

from pim_hub.drivers.magento2.driver import Magento2Driver
from pim_hub.drivers.webhook.driver import WebhookDriver
from pim_hub.registry.changes import integration_event
from pim_hub.registry.model import Integration
from pim_hub.registry.secrets import MASK, mask_config, mask_url


def test_webhook_header_values_and_url_credentials_are_masked() -> None:
    config = {
        "url": "http://user:PASS@hooks.example.com/in?token=T0K3N&channel=web",
        "headers": {
            "Cookie": "session=abc",
            "X-Shop-Key": "k-123",
            "X-Auth": "a-456",
            "Content-Type": "application/json",
        },
        "secret": "s",
    }
    masked = mask_config(config, WebhookDriver.config_model)
    shown = str(masked)
    for secret in ("PASS", "user:", "T0K3N", "session=abc", "k-123", "a-456"):
        assert secret not in shown, secret
    assert masked["headers"]["Content-Type"] == "application/json"
    assert masked["url"] == f"http://{MASK}@hooks.example.com/in?token={MASK}&channel=web"


def test_the_oauth_consumer_key_is_masked() -> None:
    config = {"oauth1": {"kind": "oauth1", "consumer_key": "ck-1", "consumer_secret": "cs"}}
    masked = mask_config(config, Magento2Driver.config_model)
    assert masked["oauth1"] == {"kind": "oauth1", "consumer_key": MASK, "consumer_secret": MASK}
    # Inside the Magento `auth` object: its kind stays readable, the key does not.
    shown = mask_config({"auth": {"kind": "oauth1", "consumer_key": "ck-1"}})
    assert shown == {"auth": {"kind": "oauth1", "consumer_key": MASK}}


def test_the_published_document_carries_no_secret_value() -> None:
    integ = Integration(
        id="i",
        name="i",
        driver="webhook",
        enabled=True,
        config={"url": "https://u:p4ss@h/x?api_key=K", "headers": {"X-Auth": "a-456"}},
        entity_types=None,
        priority_map={},
    )
    event = str(integration_event(integ))
    assert "p4ss" not in event and "a-456" not in event and "=K" not in event


def test_plain_text_and_urls_without_credentials_stay() -> None:
    assert mask_url("https://shop.example.com/rest/V1?store=default") == (
        "https://shop.example.com/rest/V1?store=default"
    )
    assert mask_config({"name": "plain text", "n": 3}) == {"name": "plain text", "n": 3}
    # An OAuth `code` is masked; a parameter that merely ends in "code" is not.
    assert (
        mask_url("https://h/cb?store_code=de&code=abc") == f"https://h/cb?store_code=de&code={MASK}"
    )
