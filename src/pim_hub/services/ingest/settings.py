"""Settings of the ingest services, read from HUB_INGEST_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    """Webhook secrets, Akeneo REST credentials and limits of the ingest services."""

    model_config = SettingsConfigDict(env_prefix="HUB_INGEST_", extra="ignore", frozen=True)

    # Webhook receiver
    events_api_secret: SecretStr | None = Field(
        default=None, description="Events API (legacy) subscription secret"
    )
    events_api_secret_previous: SecretStr | None = Field(
        default=None, description="the former Events API secret, accepted while rotating"
    )
    event_platform_secret_primary: SecretStr | None = None
    event_platform_secret_secondary: SecretStr | None = None
    timestamp_tolerance_s: int = Field(
        default=300, description="reject legacy requests older than this"
    )
    max_body_bytes: int = Field(default=1_048_576, description="larger bodies get 413")
    # Receiver hardening: one event must fit a record downstream; a slow or idle client must
    # not hold a connection; the number of connections is capped.
    max_event_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="larger events get 413; default: half the record budget "
        "(HUB_KAFKA__MESSAGE_MAX_BYTES less 64 KiB), as a mutation carries each value twice",
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, description="a request body not read within this gets 408"
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="a connection whose request headers are not complete within this "
        "(from its start, or from the previous response) is closed (slow or idle clients)",
    )
    max_connections: int = Field(
        default=1000, ge=1, description="connections served at once; more get 503"
    )
    events_api_budget_s: float = Field(
        default=0.45,
        gt=0,
        description="the Events API answer waits at most this for the broker (Akeneo gives "
        "up after 0.5 s and never retries); not stored: 503, logged with the event ids",
    )
    keep_alive_s: int = Field(default=5, ge=1, description="idle keep-alive connections close")
    own_connection: str = Field(
        default="",
        description="comma-separated authors to ignore: the hub's own Akeneo connection "
        "user (Events API `author`) and client id (Event Platform `data.author.identifier`)",
    )
    dedupe_size: int = Field(
        default=200_000, description="event ids remembered in memory for deduplication"
    )
    dedupe_retention_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="the enricher forgets handled event ids (in PostgreSQL) after this; "
        "Akeneo retries a delivery for far less",
    )
    publish_timeout_s: float = Field(
        default=4.0, description="give up waiting for the broker after this"
    )
    max_queued: int = Field(default=20_000, description="producer queue length answered with 429")

    # Akeneo REST
    akeneo_url: str = "http://127.0.0.1:8081"
    akeneo_client_id: str = ""
    akeneo_secret: SecretStr = SecretStr("")
    akeneo_username: str = ""
    akeneo_password: SecretStr = SecretStr("")
    akeneo_concurrency: int = Field(default=4, ge=1, description="Akeneo allows 4 per connection")
    akeneo_timeout_s: float = 30.0
    akeneo_max_attempts: int = Field(
        default=8, ge=1, description="tries per request (5xx, 429, timeouts)"
    )
    akeneo_backoff_max_s: float = 30.0

    # Enricher and sync
    enrich_batch: int = Field(default=500, description="raw events consumed per batch")
    sync_page_size: int = Field(default=100, ge=1, le=100)
    sync_streams: int = Field(
        default=4,
        ge=1,
        le=16,
        description="products are read as this many parallel `updated` ranges "
        "(requests in flight stay capped by akeneo_concurrency)",
    )
    sync_window: int = Field(
        default=4, ge=1, le=64, description="pages per stream waiting for acknowledgements"
    )
    sync_overlap_s: int = Field(
        default=2,
        description="the next delta starts this much before the last run began (clock skew)",
    )

    def own_authors(self) -> frozenset[str]:
        """The authors whose events the hub ignores (its own writes to the PIM)."""
        return frozenset(a.strip() for a in self.own_connection.split(",") if a.strip())
