"""OAuth 1.0a signing and config validation of the Magento 2 driver."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pydantic import ValidationError

from pim_hub.drivers.magento2 import Magento2Config
from pim_hub.drivers.magento2.auth import oauth1_header, oauth1_signature_base
from tests.unit.magento2.helpers import config_dict

RFC_PARAMS = {
    "oauth_consumer_key": "9djdj82h48djs9d2",
    "oauth_token": "kkk9d7dh3k39sjv7",
    "oauth_signature_method": "HMAC-SHA256",
    "oauth_timestamp": "137131201",
    "oauth_nonce": "7d8f3e4a",
}


def test_signature_base_string_follows_rfc5849() -> None:
    # RFC 5849 3.4.1's example request (without its form body), normalised by 3.4.1.3.2.
    url = "http://EXAMPLE.COM:80/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b"
    base = oauth1_signature_base("post", url, RFC_PARAMS)
    assert base == (
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3Da%26b5%3D%253D%25253D"
        "%26c%2540%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a"
        "%26oauth_signature_method%3DHMAC-SHA256%26oauth_timestamp%3D137131201"
        "%26oauth_token%3Dkkk9d7dh3k39sjv7"
    )


def test_header_is_signed_with_both_secrets() -> None:
    header = oauth1_header(
        "GET",
        "https://shop.test/rest/V1/products/A",
        consumer_key="ck",
        consumer_secret="cs&x",
        token="tk",
        token_secret="ts",
        nonce="n",
        timestamp=1,
    )
    assert header.startswith("OAuth ")
    fields = dict(p.split("=", 1) for p in header[6:].split(", "))
    assert fields["oauth_signature_method"] == '"HMAC-SHA256"'
    params = {
        "oauth_consumer_key": "ck",
        "oauth_nonce": "n",
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_timestamp": "1",
        "oauth_token": "tk",
        "oauth_version": "1.0",
    }
    base = oauth1_signature_base("GET", "https://shop.test/rest/V1/products/A", params)
    expected = base64.b64encode(
        hmac.new(b"cs%26x&ts", base.encode(), hashlib.sha256).digest()
    ).decode()
    from urllib.parse import unquote

    assert unquote(fields["oauth_signature"].strip('"')) == expected


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"auth": {"kind": "basic"}}, "auth"),
        ({"locales": {"fr_FR": ["nowhere"]}}, "nowhere"),
        ({"attribute_types": {"x": "pim_catalog_unknown"}}, "unknown Akeneo type"),
        ({"attributes": [{"akeneo": "a", "magento": "a", "type": "bogus"}]}, "bogus"),
        ({"on_delete": "explode"}, "on_delete"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_configs_are_refused(override: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Magento2Config.model_validate(config_dict(**override))


def test_store_views_resolve_locale_and_channel() -> None:
    config = Magento2Config.model_validate(config_dict())
    assert config.store_views() == {
        "default": ("en_US", "ecommerce"),
        "fr": ("fr_FR", "ecommerce"),
        "de": ("de_DE", "ecommerce"),
    }
    assert config.default_currency == "EUR"
    secret = config_dict()["auth"]["password"]
    assert secret not in repr(config)
