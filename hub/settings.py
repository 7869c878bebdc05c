"""Configuration of every hub process, read from HUB_* environment variables."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    """How to reach Kafka; security settings apply to every client."""

    bootstrap: str | None = Field(None, description="bootstrap servers; unset: embedded broker")
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    session_timeout_ms: int = 6000
    client_id: str = "pim-hub"

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
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
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
    integrations_refresh_s: float = 2.0
    retry_delays_s: list[int] = Field(default_factory=lambda: [30, 300, 1800])
    dispatcher_batch_size: int = 50
    dispatcher_linger_ms: int = 20
    dispatcher_max_in_flight: int = 8
    dispatcher_max_attempts: int = 4
    dispatcher_shutdown_timeout_s: float = 20.0
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

    def require_database(self) -> str:
        """The database URL, or a clear error."""
        if not self.database_url:
            raise ValueError("HUB_DATABASE_URL is not set")
        return self.database_url
