"""Any librdkafka property reaches every client: environment, properties files, the mutator."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import pytest
from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials
from pydantic import ValidationError

from pim_hub.runtime import kafka_oauth
from pim_hub.runtime.kafka import UnsupportedByMutator, faust_broker_options
from pim_hub.runtime.kafka_props import property_name, read_properties_file, redacted
from pim_hub.runtime.settings import Settings


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key in list(os.environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


#: What Confluent Cloud's console offers as a librdkafka client.properties.
CONFLUENT_CLOUD = """\
# Required connection configs for Kafka producer, consumer, and admin
bootstrap.servers=pkc-abc12.europe-west1.gcp.confluent.cloud:9092
security.protocol=SASL_SSL
sasl.mechanisms=PLAIN
sasl.username=ABCDEFGH
sasl.password=cflt/secret\\=value
# Best practice for higher availability in librdkafka clients prior to 1.7
session.timeout.ms=45000
client.id=ccloud-python-client-1
schema.registry.url=https://psrc-xyz.europe-west1.gcp.confluent.cloud
basic.auth.credentials.source=USER_INFO
basic.auth.user.info=SRKEY:SRSECRET
"""


def test_environment_properties_reach_librdkafka_with_dotted_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = _settings(
        monkeypatch,
        HUB_KAFKA_BOOTSTRAP="k:9092",
        HUB_KAFKA__PROPERTIES__SOCKET_KEEPALIVE_ENABLE="true",
        HUB_KAFKA__PROPERTIES__TOPIC_METADATA_REFRESH_INTERVAL_MS="60000",
        HUB_KAFKA__PROPERTIES__LINGER_MS="50",
    ).kafka_config({"linger.ms": 5, "group.id": "g"})
    assert conf["socket.keepalive.enable"] == "true"
    assert conf["topic.metadata.refresh.interval.ms"] == "60000"
    # The user's tuning wins over the hub's; the hub's own keys stay.
    assert conf["linger.ms"] == "50"
    assert conf["group.id"] == "g"
    assert property_name("SASL_OAUTHBEARER_CLIENT_ID") == "sasl.oauthbearer.client.id"
    assert property_name("sasl.mechanisms") == "sasl.mechanism"


def test_a_confluent_cloud_properties_file_configures_every_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "client.properties"
    path.write_text(CONFLUENT_CLOUD)
    settings = _settings(monkeypatch, HUB_KAFKA__PROPERTIES_FILE=str(path))
    conf = settings.kafka_config({"group.id": "g"})
    assert conf["bootstrap.servers"] == "pkc-abc12.europe-west1.gcp.confluent.cloud:9092"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "PLAIN"
    assert conf["sasl.password"] == "cflt/secret=value"  # Java escapes are read as Java does
    assert conf["session.timeout.ms"] == "45000"
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert not any(k.startswith(("schema.registry", "basic.auth")) for k in conf)
    assert settings.kafka.registry_properties()["basic.auth.user.info"] == "SRKEY:SRSECRET"
    assert settings.bootstrap.startswith("pkc-abc12")
    creds = faust_broker_options(settings)["broker_credentials"]
    assert isinstance(creds, SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == (
        "ABCDEFGH",
        "cflt/secret=value",
        "PLAIN",
    )
    assert creds.ssl_context is not None and creds.ssl_context.check_hostname


def test_a_java_jaas_config_becomes_username_and_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "bootstrap.servers=k:9093\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="hub" password="pa ss";\nclient.dns.lookup=use_all_dns_ips\n'
    )
    conf = _settings(monkeypatch, HUB_KAFKA__PROPERTIES_FILE=str(path)).kafka_config()
    assert (conf["sasl.username"], conf["sasl.password"]) == ("hub", "pa ss")
    assert "client.dns.lookup" not in conf and "sasl.jaas.config" not in conf
    path.write_text("sasl.jaas.config=software.amazon.msk.auth.iam.IAMLoginModule required;\n")
    with pytest.raises(ValueError, match="aws-msk-iam"):
        read_properties_file(path)


def test_explicit_settings_win_over_the_file_and_properties_over_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "client.properties"
    path.write_text(CONFLUENT_CLOUD)
    conf = _settings(
        monkeypatch,
        HUB_KAFKA__PROPERTIES_FILE=str(path),
        HUB_KAFKA_BOOTSTRAP="other:9092",
        HUB_KAFKA__SASL_USERNAME="typed-user",
        HUB_KAFKA__PROPERTIES__SASL_PASSWORD="env-password",
    ).kafka_config()
    assert conf["bootstrap.servers"] == "other:9092"
    assert conf["sasl.username"] == "typed-user"
    assert conf["sasl.password"] == "env-password"
    assert redacted(conf)["sasl.password"] == "***"


@pytest.mark.parametrize(
    "env,message",
    [
        ({"HUB_KAFKA__PROPERTIES__ENABLE_IDEMPOTENCE": "false"}, "set by the hub itself"),
        ({"HUB_KAFKA__PROPERTIES__ACKS": "1"}, "set by the hub itself"),
        (
            {
                "HUB_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
                "HUB_KAFKA__SASL_MECHANISM": "OAUTHBEARER",
            },
            "needs sasl.oauthbearer.method=oidc",
        ),
        (
            {
                "HUB_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
                "HUB_KAFKA__SASL_MECHANISM": "OAUTHBEARER",
                "HUB_KAFKA__PROPERTIES__SASL_OAUTHBEARER_METHOD": "oidc",
                "HUB_KAFKA__PROPERTIES__SASL_OAUTHBEARER_CLIENT_ID": "hub",
            },
            "client.secret, sasl.oauthbearer.token.endpoint.url",
        ),
        ({"HUB_KAFKA__SASL_OAUTHBEARER_PROVIDER": "aws-msk-iam"}, "needs aws_region"),
        ({"HUB_KAFKA__PROPERTIES_FILE": "/nonexistent/client.properties"}, "does not exist"),
    ],
)
def test_incomplete_or_unsafe_properties_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(monkeypatch, HUB_KAFKA_BOOTSTRAP="k:9092", **env)


class _TokenEndpoint:
    """An OAuth token endpoint (client credentials) on 127.0.0.1, recording what it got."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str | None, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                outer.requests.append((self.headers.get("Authorization"), body))
                data = json.dumps(
                    {"access_token": f"tok-{len(outer.requests)}", "expires_in": 3600}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_oidc_reaches_librdkafka_and_the_mutator_gets_a_token_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    import base64

    endpoint = _TokenEndpoint()
    try:
        settings = _settings(
            monkeypatch,
            HUB_KAFKA_BOOTSTRAP="k:9093",
            HUB_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
            HUB_KAFKA__SASL_MECHANISM="OAUTHBEARER",
            HUB_KAFKA__PROPERTIES__SASL_OAUTHBEARER_METHOD="oidc",
            HUB_KAFKA__PROPERTIES__SASL_OAUTHBEARER_CLIENT_ID="hub",
            HUB_KAFKA__PROPERTIES__SASL_OAUTHBEARER_CLIENT_SECRET="s3cret",
            HUB_KAFKA__PROPERTIES__SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL=endpoint.url,
            HUB_KAFKA__PROPERTIES__SASL_OAUTHBEARER_SCOPE="kafka",
        )
        conf = settings.kafka_config()
        assert conf["sasl.oauthbearer.method"] == "oidc"
        assert conf["sasl.oauthbearer.token.endpoint.url"] == endpoint.url
        creds = faust_broker_options(settings)["broker_credentials"]
        assert isinstance(creds, OAuthCredentials) and creds.protocol.value == "SASL_SSL"

        async def two_tokens() -> tuple[str, str]:
            return await creds.oauth_cb.token(), await creds.oauth_cb.token()

        assert asyncio.run(two_tokens()) == ("tok-1", "tok-1")  # cached until it expires
        ((auth, body),) = endpoint.requests
        assert auth == "Basic " + base64.b64encode(b"hub:s3cret").decode()
        assert body == "grant_type=client_credentials&scope=kafka"
    finally:
        endpoint.server.shutdown()


def test_unsecured_oauthbearer_tokens_are_refused_by_the_mutator_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(
        monkeypatch,
        HUB_KAFKA_BOOTSTRAP="k:9093",
        HUB_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
        HUB_KAFKA__SASL_MECHANISM="OAUTHBEARER",
        HUB_KAFKA__PROPERTIES__SASL_OAUTHBEARER_CONFIG="principal=hub",
    )
    assert settings.kafka_config()["sasl.oauthbearer.config"] == "principal=hub"
    with pytest.raises(UnsupportedByMutator, match=r"sasl\.oauthbearer\.config"):
        faust_broker_options(settings)


class _FakeSigner:
    calls: list[str] = []

    @classmethod
    def generate_auth_token(cls, region: str) -> tuple[str, int]:
        cls.calls.append(region)
        return f"token-for-{region}", 1_700_000_000_000


def test_msk_iam_gives_both_clients_a_signed_token(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.setattr(kafka_oauth, "_signer", lambda: _FakeSigner)
    settings = _settings(
        monkeypatch,
        HUB_KAFKA_BOOTSTRAP="b-1.msk.eu-west-1.amazonaws.com:9098",
        HUB_KAFKA__SASL_OAUTHBEARER_PROVIDER="aws-msk-iam",
        HUB_KAFKA__AWS_REGION="eu-west-1",
    )
    conf = settings.kafka_config()
    assert (conf["security.protocol"], conf["sasl.mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    assert conf["oauth_cb"]("") == ("token-for-eu-west-1", 1_700_000_000.0)
    creds = faust_broker_options(settings)["broker_credentials"]
    assert isinstance(creds, OAuthCredentials)
    assert creds.protocol.value == "SASL_SSL"
    assert asyncio.run(creds.oauth_cb.token()) == "token-for-eu-west-1"
    assert _FakeSigner.calls == ["eu-west-1", "eu-west-1"]


def test_the_real_msk_signer_signs_a_connect_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # SigV4 presigning is local: static credentials are enough to get a real token.
    import base64
    import time
    from urllib.parse import parse_qs, urlparse

    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    token, expiry = kafka_oauth.msk_iam_oauth_cb("eu-west-1")(None)
    url = urlparse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    query = parse_qs(url.query)
    assert url.hostname == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert time.time() < expiry < time.time() + 3600


def test_strimzi_mutual_tls_with_a_pem_ca_maps_to_the_mutator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An inline PEM (Strimzi's cluster CA secret) reaches aiokafka as cadata.
    import subprocess

    key, cert = tmp_path / "ca.key", tmp_path / "ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=cluster-ca"],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = _settings(
        monkeypatch,
        HUB_KAFKA_BOOTSTRAP="hub-kafka-bootstrap:9093",
        HUB_KAFKA__SECURITY_PROTOCOL="SSL",
        HUB_KAFKA__PROPERTIES__SSL_CA_PEM=cert.read_text(),
    )
    assert settings.kafka_config()["ssl.ca.pem"].startswith("-----BEGIN CERTIFICATE")
    creds = faust_broker_options(settings)["broker_credentials"]
    assert isinstance(creds, SSLCredentials)
    assert creds.context.verify_mode == ssl.CERT_REQUIRED
    assert any(c.get("subject") == ((("commonName", "cluster-ca"),),) for c in
               creds.context.get_ca_certs())  # fmt: skip


def test_tuning_properties_do_not_stop_the_mutator(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch, HUB_KAFKA_BOOTSTRAP="k:9092", HUB_KAFKA__PROPERTIES__LINGER_MS="10"
    )
    assert faust_broker_options(settings) == {
        "broker": ["kafka://k:9092"],
        "broker_credentials": None,
    }
