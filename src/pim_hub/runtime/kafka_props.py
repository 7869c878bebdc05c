"""Kafka client properties for production clusters: pass-through, properties files, checks.

Any librdkafka property reaches every client the hub makes: from a properties file
(`HUB_KAFKA__PROPERTIES_FILE`, the file Kafka's own tools take as `--command-config`) and from
`HUB_KAFKA__PROPERTIES__<NAME>` variables (`SASL_OAUTHBEARER_METHOD` is
`sasl.oauthbearer.method`: environment names cannot hold dots, and no librdkafka property has
an underscore). This module is pure: it knows property dicts, not the settings model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Properties the hub's guarantees rest on (no loss, no duplicates, per-key order, commits
#: after acknowledgement, one consumer group per service): a user property may not change them.
PROTECTED = frozenset(
    {
        "acks",
        "enable.idempotence",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "group.id",
        "message.max.bytes",  # HUB_KAFKA__MESSAGE_MAX_BYTES: the stages' record budget too
        "partitioner",
        "transactional.id",
    }
)

#: Java client properties that librdkafka does not know; a Java `client.properties` may carry
#: them and they have no meaning for the hub's clients, so they are dropped (and reported).
JAVA_ONLY = frozenset(
    {
        "client.dns.lookup",
        "key.serializer",
        "value.serializer",
        "key.deserializer",
        "value.deserializer",
        "sasl.client.callback.handler.class",
        "sasl.login.callback.handler.class",
        "ssl.truststore.type",
        "acks.config",
    }
)

#: Confluent Cloud's client.properties also carries the Schema Registry's connection.
REGISTRY_KEYS = frozenset(
    {"schema.registry.url", "basic.auth.credentials.source", "basic.auth.user.info"}
)

#: librdkafka aliases, normalised so that checks and the mutator's mapping see one name.
ALIASES = {"sasl.mechanisms": "sasl.mechanism"}

_JAAS_MODULES = {
    "org.apache.kafka.common.security.plain.PlainLoginModule": "plain",
    "org.apache.kafka.common.security.scram.ScramLoginModule": "scram",
}


class KafkaConfigError(ValueError):
    """The Kafka client configuration is incomplete or contradicts itself."""


@dataclass
class ClientProperties:
    """What a properties file (or another property source) holds, sorted by who uses it."""

    kafka: dict[str, str] = field(default_factory=dict)
    registry: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def property_name(name: str) -> str:
    """The librdkafka name of a property given as an environment suffix or as itself."""
    key = name.strip()
    if "." not in key:
        key = key.lower().replace("_", ".")
    return ALIASES.get(key, key)


def _from_jaas(value: str) -> dict[str, str]:
    """sasl.username / sasl.password out of a Java `sasl.jaas.config` (PLAIN and SCRAM)."""
    module = value.split()[0] if value.split() else ""
    if module not in _JAAS_MODULES:
        raise KafkaConfigError(
            f"sasl.jaas.config uses {module or 'nothing'}, which the hub's clients cannot run; "
            "use sasl.username/sasl.password (PLAIN, SCRAM), "
            "sasl.oauthbearer.* (OAUTHBEARER/OIDC) or HUB_KAFKA__SASL_OAUTHBEARER_PROVIDER="
            "aws-msk-iam (Amazon MSK IAM)"
        )
    found = dict(re.findall(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"', value))
    if "username" not in found or "password" not in found:
        raise KafkaConfigError('sasl.jaas.config has no username="..." password="..."')
    return {"sasl.username": found["username"], "sasl.password": found["password"]}


def sort_properties(raw: Mapping[str, str]) -> ClientProperties:
    """Split properties into librdkafka's, the registry's and the ignored Java-only ones."""
    out = ClientProperties()
    for name, value in raw.items():
        key = property_name(name)
        if key in REGISTRY_KEYS:
            out.registry[key] = value
        elif key in JAVA_ONLY:
            out.ignored.append(key)
        elif key == "sasl.jaas.config":
            out.kafka.update(_from_jaas(value))
        else:
            out.kafka[key] = value
    return out


def read_properties_file(path: str | Path) -> ClientProperties:
    """Read a Java-style `.properties` file (comments, escapes, continuation lines)."""
    from jproperties import Properties

    file = Path(path)
    if not file.is_file():
        raise KafkaConfigError(f"Kafka properties file {file} does not exist")
    props = Properties()
    with file.open("rb") as fh:
        props.load(fh, "utf-8")
    return sort_properties({key: value.data for key, value in props.items()})


def check_user_properties(props: Mapping[str, Any]) -> None:
    """Refuse user properties that would change a guarantee of the hub."""
    clash = sorted(set(props) & PROTECTED)
    if clash:
        raise KafkaConfigError(
            f"Kafka properties {', '.join(clash)} are set by the hub itself (its delivery and "
            "ordering guarantees rest on them); remove them from the properties "
            "(message.max.bytes: set HUB_KAFKA__MESSAGE_MAX_BYTES)"
        )


def check_security(conf: Mapping[str, Any], *, oauth_provider: str | None = None) -> None:
    """Fail at start-up with a clear message rather than in a client's authentication loop."""
    protocol = str(conf.get("security.protocol", "PLAINTEXT")).upper()
    mechanism = conf.get("sasl.mechanism")
    sasl = protocol.startswith("SASL_")
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise KafkaConfigError(f"unknown security_protocol {protocol}")
    if sasl and not mechanism:
        raise KafkaConfigError(
            f"security_protocol {protocol} needs sasl_mechanism "
            "(HUB_KAFKA__SASL_MECHANISM or the property sasl.mechanism)"
        )
    if not sasl and mechanism:
        raise KafkaConfigError(f"sasl_mechanism is set but security_protocol is {protocol}")
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
        conf.get("sasl.username") and conf.get("sasl.password")
    ):
        raise KafkaConfigError(f"sasl_mechanism {mechanism} needs a username and password")
    if mechanism == "OAUTHBEARER" and not oauth_provider:
        method = str(conf.get("sasl.oauthbearer.method", "default")).lower()
        if method == "oidc":
            missing = [
                k
                for k in (
                    "sasl.oauthbearer.client.id",
                    "sasl.oauthbearer.client.secret",
                    "sasl.oauthbearer.token.endpoint.url",
                )
                if not conf.get(k)
            ]
            if missing:
                raise KafkaConfigError(f"OAUTHBEARER with method oidc needs {', '.join(missing)}")
        elif not conf.get("sasl.oauthbearer.config"):
            raise KafkaConfigError(
                "sasl_mechanism OAUTHBEARER needs sasl.oauthbearer.method=oidc (with client id, "
                "secret and token endpoint), HUB_KAFKA__SASL_OAUTHBEARER_PROVIDER=aws-msk-iam, "
                "or sasl.oauthbearer.config (unsecured tokens, development only)"
            )
    if bool(conf.get("ssl.certificate.location")) != bool(conf.get("ssl.key.location")):
        raise KafkaConfigError("ssl_certificate_location and ssl_key_location go together")


def redacted(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict fit for a log or a report: secrets and callbacks hidden."""
    secret = re.compile(r"password|secret|sasl\.oauthbearer\.config|jaas|token|user\.info")
    return {
        k: ("***" if secret.search(k) else "<callback>" if callable(v) else v)
        for k, v in conf.items()
    }
