"""Configuration of every hub process, read from HUB_* environment variables."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pim_hub.runtime.outbound import DEFAULT_ALLOW
from pim_hub.schemas import topics
from pim_hub.schemas.limits import DEFAULT_MESSAGE_MAX_BYTES, record_budget
from pim_hub.schemas.versions import DEFAULT_MAX_FUTURE_S


class KafkaSettings(BaseModel):
    """How to reach Kafka; security settings apply to every client."""

    bootstrap: str | None = Field(None, description="bootstrap servers; unset: embedded broker")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = Field(None, description="CA bundle (PEM) of the brokers")
    ssl_certificate_location: str | None = Field(None, description="client certificate (mTLS)")
    ssl_key_location: str | None = Field(None, description="client private key (mTLS)")
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = Field(True, description="verify the broker certificate's name")
    session_timeout_ms: int = 6000
    fetch_wait_max_ms: int = Field(
        50,
        description="longest a consumer's fetch waits for data; the embedded broker answers "
        "a waiting fetch only when this runs out, so it is a floor on each hop's latency",
    )
    client_id: str = "pim-hub"
    # Poison records: the largest record the brokers take (their `message.max.bytes`); a
    # stage sets aside, with its reason, an output that would not fit instead of failing.
    message_max_bytes: int = Field(
        default=DEFAULT_MESSAGE_MAX_BYTES,
        ge=64 * 1024,
        description="largest record the brokers accept (HUB_KAFKA__MESSAGE_MAX_BYTES)",
    )

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        # Fail at start-up with a clear message rather than in a client's auth loop.
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not self.sasl_mechanism:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs a username and password")
        if not sasl and self.sasl_mechanism:
            raise ValueError(
                f"sasl_mechanism is set but security_protocol is {self.security_protocol}"
            )
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise ValueError("ssl_certificate_location and ssl_key_location go together")
        return self

    @property
    def uses_ssl(self) -> bool:
        """True when connections to the brokers are encrypted."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def as_librdkafka(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A librdkafka config dict (dotted keys), extended by extra."""
        if not self.bootstrap:
            raise ValueError("HUB_KAFKA_BOOTSTRAP is not set and no embedded broker was started")
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.uses_ssl:
            if self.ssl_ca_location:
                conf["ssl.ca.location"] = self.ssl_ca_location
            if self.ssl_certificate_location:
                conf["ssl.certificate.location"] = self.ssl_certificate_location
                conf["ssl.key.location"] = self.ssl_key_location
            if self.ssl_key_password:
                conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        conf.update(extra or {})
        return conf


class Settings(BaseSettings):
    """All settings; nested values use a double underscore (HUB_KAFKA__SASL_MECHANISM)."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    kafka_bootstrap: str | None = None  # HUB_KAFKA_BOOTSTRAP: the common short form
    database_url: str | None = None
    schema_registry_url: str | None = None
    topic_partitions: int = 6
    topic_replication: int = 1
    mutations_retention_ms: int = 365 * 24 * 3600 * 1000
    mutator_app_id: str = "hub-mutator"
    mutator_data_dir: str = ".hub/mutator"
    # HUB_MUTATOR_STORE: memory keeps every entity's last state in RAM (about 20 KB a product)
    # and replays the changelog at start; rocksdb keeps it on disk under mutator_data_dir.
    mutator_store: Literal["memory", "rocksdb"] = "memory"
    integrations_refresh_s: float = 2.0
    queue_map_file: str | None = None  # HUB_QUEUE_MAP_FILE: priorities YAML
    retry_delays_s: list[int] = Field(default_factory=lambda: list(topics.RETRY_DELAYS_S))
    dispatcher_batch_size: int = 50
    dispatcher_linger_ms: int = 20
    dispatcher_max_in_flight: int = 8
    dispatcher_max_attempts: int = 4
    dispatcher_shutdown_timeout_s: float = 20.0
    # Off: guard commits return before the WAL flush (faster; a PostgreSQL server crash can
    # lose the last moments of guard records, see pim_hub.services.dispatcher.guard_store.GuardStore).
    dispatcher_guard_synchronous_commit: bool = True
    dispatcher_max_buffered_bytes: int = 4 * 2**20
    # Versions: a source version further ahead of the clock than this is refused (invalid
    # snapshot, `hub produce snapshot` error): it would make every later change stale.
    version_max_future_s: float = Field(default=DEFAULT_MAX_FUTURE_S, gt=0)
    # Secrets at rest: Fernet keys (comma-separated, the first seals) for the secrets of
    # integration configs in PostgreSQL; unset, they are stored as written.
    secrets_key: SecretStr | None = None
    # Outgoing URL policy: what drivers may reach besides public addresses (loopback,
    # private, CIDRs); link-local (cloud metadata) only when a network names it.
    outbound_allow: str = DEFAULT_ALLOW
    log_level: str = "INFO"
    log_format: str = "json"

    def kafka_config(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka config with the bootstrap from HUB_KAFKA_BOOTSTRAP or HUB_KAFKA__BOOTSTRAP."""
        kafka = self.kafka
        if self.kafka_bootstrap and not kafka.bootstrap:
            kafka = kafka.model_copy(update={"bootstrap": self.kafka_bootstrap})
        return kafka.as_librdkafka(extra)

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers in use."""
        value = self.kafka.bootstrap or self.kafka_bootstrap
        if not value:
            raise ValueError("HUB_KAFKA_BOOTSTRAP is not set")
        return value

    @property
    def record_budget(self) -> int:
        """Largest record a stage writes, leaving room for what the next stage wraps around it."""
        return record_budget(self.kafka.message_max_bytes)

    def require_database(self) -> str:
        """The database URL, or a clear error."""
        if not self.database_url:
            raise ValueError("HUB_DATABASE_URL is not set")
        return self.database_url
