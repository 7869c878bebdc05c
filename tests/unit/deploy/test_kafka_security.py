"""SASL/SSL settings reach every Kafka client: librdkafka dicts and Faust's aiokafka credentials."""

from __future__ import annotations

import os
import ssl
from typing import Any

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from pydantic import ValidationError

from pim_hub.runtime.kafka import faust_broker_options
from pim_hub.runtime.settings import KafkaSettings, Settings


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key in list(os.environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


SASL_SSL = {
    "HUB_KAFKA_BOOTSTRAP": "k1:9093,k2:9093",
    "HUB_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "HUB_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "HUB_KAFKA__SASL_USERNAME": "pim-hub",
    "HUB_KAFKA__SASL_PASSWORD": "s3cret",
}


def test_sasl_ssl_from_the_environment_reaches_librdkafka(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = _settings(monkeypatch, **SASL_SSL).kafka_config({"group.id": "g"})
    assert conf == {
        "bootstrap.servers": "k1:9093,k2:9093",
        "client.id": "pim-hub",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "pim-hub",
        "sasl.password": "s3cret",
        "ssl.endpoint.identification.algorithm": "https",
        "group.id": "g",
    }


def test_mutual_tls_settings_reach_librdkafka(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = _settings(
        monkeypatch,
        HUB_KAFKA_BOOTSTRAP="k:9093",
        HUB_KAFKA__SECURITY_PROTOCOL="SSL",
        HUB_KAFKA__SSL_CA_LOCATION="/etc/ca.crt",
        HUB_KAFKA__SSL_CERTIFICATE_LOCATION="/etc/user.crt",
        HUB_KAFKA__SSL_KEY_LOCATION="/etc/user.key",
        HUB_KAFKA__SSL_CHECK_HOSTNAME="false",
    ).kafka_config()
    assert conf["ssl.ca.location"] == "/etc/ca.crt"
    assert conf["ssl.certificate.location"] == "/etc/user.crt"
    assert conf["ssl.key.location"] == "/etc/user.key"
    assert conf["ssl.endpoint.identification.algorithm"] == "none"
    assert "sasl.mechanism" not in conf


def test_plaintext_sends_no_security_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = _settings(monkeypatch, HUB_KAFKA_BOOTSTRAP="k:9092").kafka_config()
    assert conf == {
        "bootstrap.servers": "k:9092",
        "client.id": "pim-hub",
        "security.protocol": "PLAINTEXT",
    }
    assert faust_broker_options(Settings(kafka_bootstrap="a:1, b:2")) == {
        "broker": ["kafka://a:1", "kafka://b:2"],
        "broker_credentials": None,
    }


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
            "username and password",
        ),
        ({"sasl_mechanism": "PLAIN"}, "security_protocol is PLAINTEXT"),
        ({"security_protocol": "SSL", "ssl_key_location": "/k"}, "go together"),
        ({"security_protocol": "TLS"}, "security_protocol"),
    ],
)
def test_incomplete_security_settings_fail_at_start_up(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaSettings(**fields)


def test_faust_gets_sasl_credentials_with_a_verifying_tls_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = faust_broker_options(_settings(monkeypatch, **SASL_SSL))
    assert options["broker"] == ["kafka://k1:9093", "kafka://k2:9093"]
    creds = options["broker_credentials"]
    assert isinstance(creds, SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == (
        "pim-hub",
        "s3cret",
        "SCRAM-SHA-512",
    )
    assert creds.protocol.value == "SASL_SSL"
    assert creds.ssl_context is not None
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert creds.ssl_context.check_hostname is True
    assert "s3cret" not in repr(creds)


def test_faust_gets_sasl_without_tls_on_sasl_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        **SASL_SSL,
        "HUB_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "HUB_KAFKA__SASL_MECHANISM": "PLAIN",
    }
    creds = faust_broker_options(_settings(monkeypatch, **env))["broker_credentials"]
    assert isinstance(creds, SASLCredentials)
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.ssl_context is None


def test_faust_gets_ssl_credentials_on_plain_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch,
        HUB_KAFKA_BOOTSTRAP="k:9093",
        HUB_KAFKA__SECURITY_PROTOCOL="SSL",
        HUB_KAFKA__SSL_CHECK_HOSTNAME="false",
    )
    creds = faust_broker_options(settings)["broker_credentials"]
    assert isinstance(creds, SSLCredentials)
    assert creds.context.check_hostname is False
    assert creds.context.verify_mode == ssl.CERT_REQUIRED
