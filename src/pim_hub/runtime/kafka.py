"""Thin confluent-kafka helpers: producers that confirm, consumers, and topic management."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)

from pim_hub.runtime.kafka_oauth import MskIamTokenProvider, OidcTokenProvider
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.errors import RetryableError
from pim_hub.schemas.topics import TopicSpec, catalogue

logger = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]


class DeliveryFailed(RetryableError):
    """The broker did not acknowledge a write."""

    def __init__(self, topic: str, error: KafkaError | str) -> None:
        super().__init__(f"write to {topic} failed: {error}")
        self.topic = topic
        self.error = error

    @property
    def retriable(self) -> bool:
        """True when the client says trying again may work."""
        return isinstance(self.error, KafkaError) and self.error.retriable()


def make_producer(settings: Settings, **extra: Any) -> Producer:
    """An idempotent producer with acks=all: an acknowledged write is never lost or doubled."""
    conf = settings.kafka_config(
        {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            # Java's partitioner (murmur2), as Faust/aiokafka, Kafka Streams and Connect use:
            # every producer of a topic must send one key to one partition, or an entity's
            # snapshots, mutations or jobs would be split over partitions and lose their order.
            "partitioner": "murmur2_random",
            # The same limit the stages check their outputs against (HUB_KAFKA__MESSAGE_MAX_BYTES).
            "message.max.bytes": settings.kafka.message_max_bytes,
            **extra,
        }
    )
    producer = Producer(conf)
    _serve_oauth(producer, conf)
    return producer


def consumer_config(
    settings: Settings, group_id: str, background: bool = False, **extra: Any
) -> dict[str, Any]:
    """Consumer config with manual commits: offsets move only after outputs are acknowledged.

    `background`: no live change waits for this consumer; it fetches with the longer
    `background_fetch_wait_max_ms`, so while idle it asks the broker a tenth as often.
    """
    kafka = settings.kafka
    wait = kafka.background_fetch_wait_max_ms if background else kafka.fetch_wait_max_ms
    return settings.kafka_config(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.kafka.session_timeout_ms,
            "heartbeat.interval.ms": max(500, settings.kafka.session_timeout_ms // 4),
            "partition.assignment.strategy": "cooperative-sticky",
            # librdkafka waits up to 500 ms by default; Apache Kafka answers as soon as data
            # arrives, the embedded broker only when the wait runs out.
            "fetch.wait.max.ms": wait,
            **extra,
        }
    )


def consume_ready(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Up to `max_messages` records: waits at most `timeout_s` for the first, then takes only
    what the client has already fetched.

    librdkafka's `consume(n, timeout)` returns only when it has `n` records or the timeout ran
    out, so a stage reading a trickle of live records with a large batch waited the whole
    timeout for each (the enricher: 0.5 s of every webhook's way). A busy topic still gives
    full batches: the fetched records are there at once.
    """
    first = consumer.consume(1, timeout_s)
    if not first or max_messages <= 1:
        return first
    return first + consumer.consume(max_messages - 1, 0)


def produce_sync(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: str | bytes | None = None,
    headers: Headers | None = None,
    timeout: float = 30.0,
) -> Message:
    """Produce one record and block until the broker acknowledged it."""
    result: dict[str, Any] = {}

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        result["err"], result["msg"] = err, msg

    producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
    remaining = producer.flush(timeout)
    if remaining or "msg" not in result:
        raise DeliveryFailed(topic, "not acknowledged before the timeout")
    if result["err"] is not None:
        raise DeliveryFailed(topic, result["err"])
    msg: Message = result["msg"]
    return msg


class AsyncProducer:
    """Wraps a confluent Producer for asyncio: `await send(...)` returns once acknowledged.

    A thread blocks in librdkafka's poll, which returns as soon as an acknowledgement arrives:
    acknowledgements reach the event loop at once (no polling interval adds latency) and an
    idle service burns no CPU. Completions are handed to the loop in batches, one wake-up for
    all the acknowledgements one poll served.
    """

    def __init__(self, producer: Producer, poll_interval: float = 0.1) -> None:
        self.producer = producer
        # The longest a poll blocks: how soon the thread notices close(), not a latency.
        self._poll_interval = poll_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._done: collections.deque[tuple[asyncio.Future[Message], Any, Message]] = (
            collections.deque()
        )
        self._closed = threading.Event()

    async def start(self) -> None:
        """Start serving delivery callbacks."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._poll_loop, name="producer-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            try:
                self.producer.poll(self._poll_interval)
            except Exception as exc:
                # A fatal producer error must not end this thread silently: acknowledgements
                # already queued still reach their waiters, and the owner sees the error on
                # its next write and can replace the producer.
                logger.error("producer poll failed", extra={"error": str(exc)})
                self._closed.wait(self._poll_interval)
            self._hand_over()

    def _hand_over(self) -> None:
        if self._done and self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._resolve)
            except RuntimeError:  # the loop closed in between: nobody awaits any more
                pass

    def _resolve(self) -> None:
        while self._done:
            fut, err, msg = self._done.popleft()
            if fut.done():
                continue
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(msg)

    def send_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: str | bytes | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[Message]:
        """Queue a record; the future resolves when the broker acknowledged it."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Message] = loop.create_future()
        done = self._done

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            # Runs in whichever thread polled: only queue here, the loop resolves.
            done.append((fut, DeliveryFailed(topic, err) if err is not None else None, msg))

        try:
            self.producer.produce(
                topic, value=value, key=key, headers=headers, on_delivery=on_delivery
            )
        except BufferError:
            self.producer.poll(0.1)  # queue full: serve callbacks once, then try again
            self._resolve()
            self.producer.produce(
                topic, value=value, key=key, headers=headers, on_delivery=on_delivery
            )
        return fut

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: str | bytes | None = None,
        headers: Headers | None = None,
    ) -> Message:
        """Produce one record and wait for its acknowledgement."""
        return await self.send_nowait(topic, value, key, headers)

    async def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, then stop."""
        await asyncio.get_running_loop().run_in_executor(None, self.producer.flush, timeout)
        self._closed.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._resolve()


def _serve_oauth(client: Any, conf: dict[str, Any]) -> None:
    # librdkafka asks oauth_cb for the first token from a poll: producers and admin clients
    # of an OAUTHBEARER provider poll once so their first request does not wait for one.
    if "oauth_cb" in conf:
        client.poll(0)


def admin_client(settings: Settings, **extra: Any) -> AdminClient:
    """An admin client for the configured cluster."""
    conf = settings.kafka_config(extra)
    admin = AdminClient(conf)
    _serve_oauth(admin, conf)
    return admin


@dataclass
class TopicReport:
    """What `hub topics apply` found and did (with dry_run: what it would do)."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    dry_run: bool = False

    def lines(self) -> list[str]:
        """Human-readable report: a line per topic, then the summary."""
        created = "to create" if self.dry_run else "created  "
        out = [f"{created} {t}" for t in self.created]
        out += [f"updated   {t}" for t in self.updated]
        out += [f"drift     {d}" for d in self.drift]
        out += [f"ok        {t}" for t in self.unchanged]
        return [*out, self.summary()]

    def summary(self) -> str:
        """One line: how many topics, and what happened to them."""
        total = len(self.created) + len(self.drift) + len(self.unchanged)
        if self.dry_run:
            return (
                f"{total} topics: {len(self.created)} to create, {len(self.drift)} with drift, "
                f"{len(self.unchanged)} as in the catalogue (dry run: nothing changed)"
            )
        left = len(self.drift) - len(self.updated)
        return (
            f"{total} topics: {len(self.created)} created, {len(self.updated)} updated, "
            f"{left} with drift left as it is, {len(self.unchanged)} as in the catalogue"
        )


class StepProgress(Protocol):
    """Where a long operation reports its steps (the CLI's progress bar)."""

    def start(self, total: int) -> None:
        """The number of steps to come."""

    def advance(self, n: int) -> None:
        """n more steps done."""

    def describe(self, text: str) -> None:
        """What is being done now."""


def settings_catalogue(settings: Settings) -> list[TopicSpec]:
    """The topic catalogue with this deployment's partitions and retention."""
    return catalogue(
        settings.topic_partitions, settings.mutations_retention_ms, settings.retry_delays_s
    )


@dataclass(frozen=True)
class TopicProfile:
    """Cluster-wide topic defaults laid over the catalogue (`hub topics apply --profile`)."""

    name: str
    replication: int | None  # None: HUB_TOPIC_REPLICATION
    configs: dict[str, str] = field(default_factory=dict)
    doc: str = ""


#: default: whatever HUB_TOPIC_REPLICATION says (1 on a development broker).
#: production: an acknowledged write (acks=all) is on at least two of three brokers, so one
#: broker can fail or restart without losing a record or stopping producers.
TOPIC_PROFILES: dict[str, TopicProfile] = {
    "default": TopicProfile("default", None, {}, "replication from HUB_TOPIC_REPLICATION"),
    "production": TopicProfile(
        "production", 3, {"min.insync.replicas": "2"}, "replication 3, min.insync.replicas 2"
    ),
}


def topic_profile(name: str) -> TopicProfile:
    """A topic profile by name, or a clear error."""
    try:
        return TOPIC_PROFILES[name]
    except KeyError as exc:
        raise ValueError(
            f"unknown topic profile {name!r}; known: {', '.join(TOPIC_PROFILES)}"
        ) from exc


def profile_replication(settings: Settings, profile: str = "default") -> int:
    """The replication factor new topics get under a profile."""
    return topic_profile(profile).replication or settings.topic_replication


def profile_catalogue(settings: Settings, profile: str = "default") -> list[TopicSpec]:
    """The deployment's catalogue with a profile's topic configs added to every topic."""
    extra = topic_profile(profile).configs
    return [replace(s, extra={**s.extra, **extra}) for s in settings_catalogue(settings)]


#: librdkafka properties the mutator's aiokafka client gets through faust_broker_options.
FAUST_MAPPED = frozenset(
    {
        "bootstrap.servers",
        "client.id",
        "security.protocol",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
        "sasl.kerberos.service.name",
        "ssl.ca.location",
        "ssl.ca.pem",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "ssl.endpoint.identification.algorithm",
        "sasl.oauthbearer.method",
        "sasl.oauthbearer.client.id",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.token.endpoint.url",
        "sasl.oauthbearer.scope",
    }
)


class UnsupportedByMutator(ValueError):
    """A Kafka security setting the mutator's client (aiokafka) cannot honour."""


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """`broker` and `broker_credentials` for faust.App from the same settings as librdkafka.

    The mutator passes these to `faust.App(...)` so aiokafka authenticates like every
    confluent client: SASL (PLAIN, SCRAM, GSSAPI, OAUTHBEARER with OIDC client credentials or
    the hub's MSK IAM provider) and TLS, from the typed settings, the properties file and HUB_KAFKA__PROPERTIES__*.
    A security property aiokafka has no equivalent for is refused with its name (the mutator
    would otherwise connect differently from every other client); other properties (tuning)
    concern librdkafka only and are listed in a warning.
    """
    import ssl

    from faust.auth import GSSAPICredentials, OAuthCredentials, SASLCredentials, SSLCredentials

    kafka = settings.kafka_settings()
    conf = kafka.merged()
    security_keys = ("sasl.", "ssl.", "security.", "enable.ssl", "oauth")
    unsupported = sorted(k for k in conf if k not in FAUST_MAPPED and k.startswith(security_keys))
    mechanism = conf.get("sasl.mechanism")
    oidc = str(conf.get("sasl.oauthbearer.method", "")).lower() == "oidc"
    if mechanism == "OAUTHBEARER" and kafka.sasl_oauthbearer_provider is None and not oidc:
        unsupported.append(
            "sasl.mechanism=OAUTHBEARER without sasl.oauthbearer.method=oidc or "
            "HUB_KAFKA__SASL_OAUTHBEARER_PROVIDER (unsecured tokens)"
        )
    if unsupported:
        raise UnsupportedByMutator(
            "the mutator's Kafka client (aiokafka) cannot use: "
            + ", ".join(unsupported)
            + "; supported there: SASL PLAIN/SCRAM/GSSAPI, OAUTHBEARER with "
            "sasl.oauthbearer.method=oidc or HUB_KAFKA__SASL_OAUTHBEARER_PROVIDER=aws-msk-iam, "
            "TLS with CA and client certificate"
        )
    tuning = sorted(k for k in conf if k not in FAUST_MAPPED)
    if tuning:
        logger.warning(
            "Kafka properties apply to the confluent clients only, not to the mutator's",
            extra={"properties": tuning},
        )
    urls = [f"kafka://{h.strip()}" for h in settings.bootstrap.split(",") if h.strip()]
    protocol = str(conf.get("security.protocol", "PLAINTEXT")).upper()
    context: ssl.SSLContext | None = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=conf.get("ssl.ca.location") or None,
            cadata=conf.get("ssl.ca.pem") or None,
        )
        check_hostname = conf.get("ssl.endpoint.identification.algorithm", "https") != "none"
        context.check_hostname = check_hostname
        if not check_hostname:
            context.verify_mode = ssl.CERT_REQUIRED  # still verify the chain, not the name
        if conf.get("ssl.certificate.location"):
            context.load_cert_chain(
                conf["ssl.certificate.location"],
                conf.get("ssl.key.location"),
                conf.get("ssl.key.password"),
            )
    credentials: SASLCredentials | SSLCredentials | OAuthCredentials | GSSAPICredentials | None
    credentials = None
    if protocol.startswith("SASL_"):
        if mechanism == "OAUTHBEARER" and kafka.sasl_oauthbearer_provider is None:
            credentials = OAuthCredentials(
                oauth_cb=OidcTokenProvider(
                    conf["sasl.oauthbearer.token.endpoint.url"],
                    conf["sasl.oauthbearer.client.id"],
                    conf["sasl.oauthbearer.client.secret"],
                    conf.get("sasl.oauthbearer.scope"),
                ),
                ssl_context=context,
            )
        elif mechanism == "OAUTHBEARER":
            assert kafka.aws_region is not None  # checked by KafkaSettings
            credentials = OAuthCredentials(
                oauth_cb=MskIamTokenProvider(kafka.aws_region), ssl_context=context
            )
        elif mechanism == "GSSAPI":
            credentials = GSSAPICredentials(
                kerberos_service_name=conf.get("sasl.kerberos.service.name", "kafka"),
                ssl_context=context,
            )
        else:
            credentials = SASLCredentials(
                username=conf.get("sasl.username"),
                password=conf.get("sasl.password"),
                mechanism=mechanism,
                ssl_context=context,
            )
    elif context is not None:
        credentials = SSLCredentials(context)
    return {"broker": urls, "broker_credentials": credentials}


def apply_topics(
    settings: Settings,
    specs: Sequence[TopicSpec] | None = None,
    *,
    dry_run: bool = False,
    fix_configs: bool = True,
    profile: str = "default",
    progress: StepProgress | None = None,
) -> TopicReport:
    """Create missing topics and report (and fix, unless dry_run) config drift, idempotently.

    A profile (see TOPIC_PROFILES) sets the replication of new topics and adds its configs
    to every topic; a replication drift is reported, never changed (that is a reassignment).
    `progress` gets a step per topic, as the broker answers for it.
    """
    extra = topic_profile(profile).configs
    replication = profile_replication(settings, profile)
    specs = [
        replace(s, extra={**s.extra, **extra})
        for s in (specs if specs is not None else settings_catalogue(settings))
    ]
    admin = admin_client(settings)
    if progress is not None:
        progress.start(len(specs))
        progress.describe("listing topics")
    existing = admin.list_topics(timeout=10).topics
    report = TopicReport(dry_run=dry_run)
    missing = [s for s in specs if s.name not in existing]
    if missing and not dry_run:
        if progress is not None:
            progress.describe(f"creating {len(missing)} topics")
        futures = admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=replication,
                    config=s.configs(),
                )
                for s in missing
            ]
        )
        for name, fut in futures.items():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            if progress is not None:
                progress.describe(f"created {name}")
                progress.advance(1)
    elif missing and progress is not None:
        progress.advance(len(missing))
    report.created = [s.name for s in missing]
    present = [s for s in specs if s.name in existing]
    if present:
        if progress is not None:
            progress.describe(f"checking the configs of {len(present)} topics")
        resources = [ConfigResource("topic", s.name) for s in present]
        described = admin.describe_configs(resources)
        to_alter: list[TopicSpec] = []
        for spec, res in zip(present, resources, strict=True):
            actual = described[res].result()
            drift = []
            parts = len(existing[spec.name].partitions)
            if parts != spec.partitions:
                drift.append(f"partitions {parts} (catalogue {spec.partitions})")
            replicas = _replication_of(existing[spec.name])
            if replicas is not None and replicas < replication:
                drift.append(f"replication {replicas} (profile {profile} wants {replication})")
            for key, want in spec.configs().items():
                have = actual.get(key)
                if have is not None and have.value != want:
                    drift.append(f"{key}={have.value} (catalogue {want})")
            fixing = fix_configs and not dry_run
            if drift:
                report.drift.append(f"{spec.name}: " + ", ".join(drift))
                if any(not d.startswith(("partitions", "replication")) for d in drift):
                    to_alter.append(spec)
            else:
                report.unchanged.append(spec.name)
            if progress is not None and not (fixing and to_alter and to_alter[-1] is spec):
                progress.describe(f"checked {spec.name}")
                progress.advance(1)
        if to_alter and fix_configs and not dry_run:
            if progress is not None:
                progress.describe(f"updating the configs of {len(to_alter)} topics")
            _alter_configs(admin, to_alter)
            report.updated = [s.name for s in to_alter]
            if progress is not None:
                progress.advance(len(to_alter))
    return report


def _replication_of(metadata: Any) -> int | None:
    """The smallest replica count of a topic's partitions (None when the broker says nothing)."""
    counts = [len(p.replicas) for p in metadata.partitions.values() if p.replicas]
    return min(counts) if counts else None


def _alter_configs(admin: AdminClient, specs: Sequence[TopicSpec]) -> None:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AlterConfigOpType,
        ConfigEntry,
    )

    resources = [
        ConfigResource(
            "topic",
            s.name,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in s.configs().items()
            ],
        )
        for s in specs
    ]
    for fut in admin.incremental_alter_configs(resources).values():
        try:
            fut.result()
        except KafkaException as exc:
            logger.warning("could not update topic configs", extra={"error": str(exc)})
