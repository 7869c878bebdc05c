"""Configuration of every hub process, read from HUB_* environment variables."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pim_hub.runtime import kafka_oauth, kafka_props
from pim_hub.runtime.kafka_props import PROTECTED as PROTECTED_KEYS
from pim_hub.runtime.outbound import DEFAULT_ALLOW
from pim_hub.schemas import topics
from pim_hub.schemas.limits import DEFAULT_MESSAGE_MAX_BYTES, record_budget
from pim_hub.schemas.ownership import DEFAULT_SOURCE, Ownership
from pim_hub.schemas.versions import DEFAULT_MAX_FUTURE_S


class KafkaSettings(BaseModel):
    """How to reach Kafka; security settings apply to every client."""

    bootstrap: str | None = Field(None, description="bootstrap servers; unset: embedded broker")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None
    ) = None
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
    background_fetch_wait_max_ms: int = Field(
        500,
        description="the same for consumers no live change waits for (the `low` dispatchers "
        "of replays and resyncs, the projectors): an idle consumer fetches a tenth as often",
    )
    client_id: str = "pim-hub"
    # Poison records: the largest record the brokers take (their `message.max.bytes`); a
    # stage sets aside, with its reason, an output that would not fit instead of failing.
    message_max_bytes: int = Field(
        default=DEFAULT_MESSAGE_MAX_BYTES,
        ge=64 * 1024,
        description="largest record the brokers accept (HUB_KAFKA__MESSAGE_MAX_BYTES)",
    )
    # Production Kafka: any librdkafka property, from a properties file and the environment
    # (pim_hub.runtime.kafka_props), and OAUTHBEARER token providers (kafka_oauth).
    properties_file: str | None = Field(
        None, description="a client.properties file (Kafka's --command-config format)"
    )
    properties: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka properties; HUB_KAFKA__PROPERTIES__SASL_OAUTHBEARER_METHOD "
        "is sasl.oauthbearer.method",
    )
    sasl_oauthbearer_provider: Literal["aws-msk-iam"] | None = Field(
        None, description="a token provider of the hub: aws-msk-iam (extra `msk`)"
    )
    aws_region: str | None = Field(None, description="the AWS region of an MSK cluster")

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        # Fail at start-up with a clear message rather than in a client's auth loop: the
        # check runs on what the clients will get, typed settings and properties merged.
        conf = self.merged()
        kafka_props.check_user_properties(self.user_properties())
        if self.sasl_oauthbearer_provider == "aws-msk-iam" and not self.aws_region:
            raise ValueError("sasl_oauthbearer_provider aws-msk-iam needs aws_region")
        kafka_props.check_security(conf, oauth_provider=self.sasl_oauthbearer_provider)
        return self

    @property
    def uses_ssl(self) -> bool:
        """True when connections to the brokers are encrypted."""
        protocol = str(self.merged().get("security.protocol", "PLAINTEXT")).upper()
        return protocol in ("SSL", "SASL_SSL")

    def file_properties(self) -> kafka_props.ClientProperties:
        """What the properties file holds (nothing when none is set)."""
        if not self.properties_file:
            return kafka_props.ClientProperties()
        return kafka_props.read_properties_file(self.properties_file)

    def user_properties(self) -> dict[str, str]:
        """The properties given by the user: the file's, then the environment's over them."""
        env = kafka_props.sort_properties(self.properties)
        return {**self.file_properties().kafka, **env.kafka}

    def registry_properties(self) -> dict[str, str]:
        """Schema Registry properties a Confluent Cloud client.properties file carries."""
        return {
            **self.file_properties().registry,
            **kafka_props.sort_properties(self.properties).registry,
        }

    def _typed(self, fields: set[str] | None) -> dict[str, Any]:
        """The librdkafka keys of the typed settings (all, or only those named)."""

        def has(name: str) -> bool:
            return fields is None or name in fields

        conf: dict[str, Any] = {}
        if self.bootstrap and has("bootstrap"):
            conf["bootstrap.servers"] = self.bootstrap
        if has("client_id"):
            conf["client.id"] = self.client_id
        if has("security_protocol"):
            conf["security.protocol"] = self.security_protocol
        if self.sasl_oauthbearer_provider and has("sasl_oauthbearer_provider"):
            # A provider implies how it talks: OAUTHBEARER over TLS.
            conf["security.protocol"] = "SASL_SSL"
            conf["sasl.mechanism"] = "OAUTHBEARER"
        if self.sasl_mechanism and has("sasl_mechanism"):
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username and has("sasl_username"):
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password and has("sasl_password"):
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location and has("ssl_ca_location"):
            conf["ssl.ca.location"] = self.ssl_ca_location
        if self.ssl_certificate_location and has("ssl_certificate_location"):
            conf["ssl.certificate.location"] = self.ssl_certificate_location
        if self.ssl_key_location and has("ssl_key_location"):
            conf["ssl.key.location"] = self.ssl_key_location
        if self.ssl_key_password and has("ssl_key_password"):
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        if has("ssl_check_hostname"):
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        return conf

    def merged(self) -> dict[str, Any]:
        """Every client's properties: typed defaults < properties file < typed settings
        that were set < HUB_KAFKA__PROPERTIES__*. TLS keys are dropped without TLS."""
        env = kafka_props.sort_properties(self.properties).kafka
        conf = {
            **self._typed(None),
            **self.file_properties().kafka,
            **self._typed(set(self.model_fields_set)),
            **env,
        }
        if str(conf.get("security.protocol", "")).upper() not in ("SSL", "SASL_SSL"):
            for key in [k for k in conf if k.startswith("ssl.")]:
                del conf[key]
        return conf

    def as_librdkafka(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A librdkafka config dict (dotted keys): the hub's extra under the user's properties.

        The user's properties win over the hub's tuning (linger, fetch waits, timeouts); the
        keys the hub's guarantees rest on cannot be set by the user (kafka_props.PROTECTED).
        """
        conf = self.merged()
        if not conf.get("bootstrap.servers"):
            raise ValueError("HUB_KAFKA_BOOTSTRAP is not set and no embedded broker was started")
        user = self.user_properties()
        out = {**conf, **(extra or {})}
        # The merged value, not the user's: a typed setting that was set outranks the file.
        out.update({k: conf[k] for k in user if k in conf and k not in PROTECTED_KEYS})
        if self.sasl_oauthbearer_provider == "aws-msk-iam":
            assert self.aws_region is not None  # checked by the validator
            out["oauth_cb"] = kafka_oauth.msk_iam_oauth_cb(self.aws_region)
        return out


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
    # The mutator's own settings (HUB_MUTATOR_*) are pim_hub.services.mutator.settings.
    integrations_refresh_s: float = 2.0
    queue_map_file: str | None = None  # HUB_QUEUE_MAP_FILE: priorities YAML
    retry_delays_s: list[int] = Field(default_factory=lambda: list(topics.RETRY_DELAYS_S))
    dispatcher_batch_size: int = 50
    dispatcher_linger_ms: int = 20
    # How long a batch for `handle_batch` may wait on a busy lane to fill up while jobs keep
    # coming (pim_hub.services.dispatcher.core.filling); 0: only the linger.
    dispatcher_batch_fill_ms: int = 250
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
    # private, CIDRs); empty by default, so loopback, private, link-local and metadata
    # ranges are refused; link-local (cloud metadata) only when a network names it.
    outbound_allow: str = DEFAULT_ALLOW
    # Per-entity order across priority lanes (docs/delivery-semantics.md): how long a job
    # waits at most for an older job of its entity pending in another lane; 0: off.
    dispatcher_order_hold_s: float = 60.0
    # Circuit breaker per integration (docs/delivery-semantics.md): consecutive outage failures
    # (unreachable, timeouts, 5xx) that pause an integration's jobs (0: never), and the
    # first and longest waits between probes of its target.
    dispatcher_breaker_threshold: int = 5
    dispatcher_breaker_probe_min_s: float = 1.0
    dispatcher_breaker_probe_max_s: float = 5.0
    # How long an outage holds an integration's jobs at most (seconds; 0: no limit): after it
    # they go through the retry tiers to the dead-letter topic. Alert PimHubOutageCeilingNear
    # fires at half of it.
    dispatcher_outage_ceiling_s: float = Field(default=86400.0, ge=0)
    # Throttling (docs/delivery-semantics.md): a call slower than this (seconds) lowers the
    # integration's concurrency like a 429 does (0: latency is no signal).
    dispatcher_throttle_latency_s: float = Field(default=10.0, ge=0)
    log_level: str = "INFO"
    log_format: str = "json"
    # Schema Registry: the Confluent client's auth, TLS and caching; register or look up only.
    schema_registry_basic_auth: SecretStr | None = None  # "key:secret" (Confluent Cloud API key)
    schema_registry_bearer_token: SecretStr | None = None  # a static OAuth bearer token
    schema_registry_bearer_logical_cluster: str | None = None  # lsrc-... with a bearer token
    schema_registry_ssl_ca_location: str | None = None
    schema_registry_ssl_certificate_location: str | None = None
    schema_registry_ssl_key_location: str | None = None
    # false: the hub only looks its schemas up (read-only keys, auto.register.schemas=false);
    # `hub schemas register` registers them at deployment.
    schema_registry_auto_register: bool = True
    # Any other SchemaRegistryClient property, e.g. _BEARER_AUTH_CREDENTIALS_SOURCE=OAUTHBEARER.
    schema_registry_properties: dict[str, str] = Field(default_factory=dict)
    # Producers' patches and field ownership (pim_hub.schemas.ownership): HUB_SOURCES names
    # each source and the fields it owns, e.g. {"erp": ["values.stock", "values.price"]};
    # Akeneo owns the rest. A patch for an entity the hub has not seen waits up to
    # patches_wait_s (0: refused at once) before it is set aside with that reason.
    sources: dict[str, list[str]] = Field(default_factory=dict)
    patches_wait_s: float = Field(default=30.0, ge=0)

    def kafka_config(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka config with the bootstrap from HUB_KAFKA_BOOTSTRAP or HUB_KAFKA__BOOTSTRAP."""
        return self.kafka_settings().as_librdkafka(extra)

    def kafka_settings(self) -> KafkaSettings:
        """The Kafka settings with the bootstrap of HUB_KAFKA_BOOTSTRAP when the nested is unset."""
        kafka = self.kafka
        if self.kafka_bootstrap and not kafka.bootstrap:
            # model_copy keeps the set fields and marks bootstrap as set, as if given nested.
            kafka = kafka.model_copy(update={"bootstrap": self.kafka_bootstrap})
            kafka.model_fields_set.add("bootstrap")
        return kafka

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers in use (HUB_KAFKA_BOOTSTRAP, the nested one, or the file's)."""
        value = self.kafka.bootstrap or self.kafka_bootstrap
        if not value:
            value = self.kafka.merged().get("bootstrap.servers")
        if not value:
            raise ValueError("HUB_KAFKA_BOOTSTRAP is not set")
        return value

    @property
    def record_budget(self) -> int:
        """Largest record a stage writes, leaving room for what the next stage wraps around it."""
        return record_budget(self.kafka.message_max_bytes)

    @model_validator(mode="after")
    def _sources_are_valid(self) -> Settings:
        if DEFAULT_SOURCE in self.sources:
            raise ValueError(
                f"HUB_SOURCES may not name {DEFAULT_SOURCE}: it owns every field no source claims"
            )
        for name, patterns in self.sources.items():
            if not patterns or not all(p.strip() for p in patterns):
                raise ValueError(f"HUB_SOURCES: source {name} needs field patterns it owns")
        return self

    def ownership(self) -> Ownership:
        """Who owns which field (HUB_SOURCES); Akeneo owns what no source claims."""
        return Ownership.from_sources(self.sources)

    def registry_config(self) -> dict[str, Any] | None:
        """The Schema Registry client's config (None: no registry, single-object encoding).

        From the HUB_SCHEMA_REGISTRY_* settings, over the registry keys of the Kafka
        properties file (Confluent Cloud's client.properties carries `schema.registry.url`
        and `basic.auth.user.info`). `auto.register.schemas` is the hub's, not the client's.
        """
        from_file = self.kafka.registry_properties()
        url = self.schema_registry_url or from_file.get("schema.registry.url")
        if not url:
            return None
        conf: dict[str, Any] = {"url": url}
        user_info = from_file.get("basic.auth.user.info")
        if self.schema_registry_basic_auth:
            user_info = self.schema_registry_basic_auth.get_secret_value()
        if user_info:
            conf["basic.auth.user.info"] = user_info
        if self.schema_registry_bearer_token:
            conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
            conf["bearer.auth.token"] = self.schema_registry_bearer_token.get_secret_value()
            if self.schema_registry_bearer_logical_cluster:
                conf["bearer.auth.logical.cluster"] = self.schema_registry_bearer_logical_cluster
        for key, value in (
            ("ssl.ca.location", self.schema_registry_ssl_ca_location),
            ("ssl.certificate.location", self.schema_registry_ssl_certificate_location),
            ("ssl.key.location", self.schema_registry_ssl_key_location),
        ):
            if value:
                conf[key] = value
        for name, value in self.schema_registry_properties.items():
            conf[kafka_props.property_name(name)] = value
        conf["auto.register.schemas"] = self.schema_registry_auto_register
        return conf

    def require_database(self) -> str:
        """The database URL, or a clear error."""
        if not self.database_url:
            raise ValueError("HUB_DATABASE_URL is not set")
        return self.database_url
