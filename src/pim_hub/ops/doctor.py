"""`hub doctor`: checks the Kafka cluster the settings point at, and says how to fix it.

In order: the client configuration (for the confluent clients and for the mutator's aiokafka
client), connectivity and authentication, every topic of the catalogue (exists, partitions,
configs), what the principal may do on each topic and consumer group (the broker's
authorized operations, KIP-430; a fetch where the broker does not report them) and the
message size limits of the broker and the topics against the hub's producers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AclOperation, ConfigResource  # type: ignore[attr-defined]

from pim_hub.ops.exporter import known_groups
from pim_hub.runtime.kafka import (
    UnsupportedByMutator,
    faust_broker_options,
    profile_catalogue,
)
from pim_hub.runtime.logread import ephemeral_consumer
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.topics import TopicSpec
from pim_hub.services.mutator.settings import MutatorSettings, default_mutator_settings

logger = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail"]

#: What the hub does on every topic of its catalogue (each is written by one service and
#: read by another, and the operator tools read them all) and on every consumer group.
TOPIC_OPERATIONS = (AclOperation.DESCRIBE, AclOperation.READ, AclOperation.WRITE)
GROUP_OPERATIONS = (AclOperation.DESCRIBE, AclOperation.READ)


class AdminApi(Protocol):
    """The admin calls the doctor makes (confluent_kafka.admin.AdminClient has them)."""

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        """Cluster metadata."""

    def describe_configs(self, resources: list[ConfigResource], **kwargs: Any) -> Any:
        """Topic and broker configs."""

    def describe_topics(self, topics: TopicCollection, **kwargs: Any) -> Any:
        """Topic descriptions, with the principal's authorized operations."""

    def describe_consumer_groups(self, group_ids: list[str], **kwargs: Any) -> Any:
        """Group descriptions, with the principal's authorized operations."""

    def describe_cluster(self, **kwargs: Any) -> Any:
        """The cluster, with the principal's authorized operations."""


@dataclass
class Finding:
    """One checked thing: what, its status, why, and how to fix it."""

    check: str
    subject: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        """One report line (and the fix below it)."""
        text = f"{self.status.upper():4}  {self.check:11} {self.subject}: {self.detail}"
        return text + (f"\n      fix: {self.fix}" if self.fix else "")


@dataclass
class DoctorReport:
    """Every finding, in the order checked."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, check: str, subject: str, status: Status, detail: str, fix: str = "") -> Finding:
        """Record one finding."""
        finding = Finding(check, subject, status, detail, fix)
        self.findings.append(finding)
        return finding

    @property
    def ok(self) -> bool:
        """True when nothing failed (warnings allowed)."""
        return not any(f.status == "fail" for f in self.findings)

    def by(self, check: str, subject: str | None = None) -> list[Finding]:
        """The findings of one check (and subject)."""
        return [
            f
            for f in self.findings
            if f.check == check and (subject is None or f.subject == subject)
        ]

    def lines(self) -> list[str]:
        """The report, and a summary line."""
        fails = sum(f.status == "fail" for f in self.findings)
        warns = sum(f.status == "warn" for f in self.findings)
        summary = f"{fails} failed, {warns} warnings, {len(self.findings)} checks"
        return [f.line() for f in self.findings] + [summary]


def _classify(errors: Sequence[KafkaError], bootstrap: str) -> tuple[str, str, str]:
    """(check, detail, fix) for a connection that failed, from the client's errors."""
    codes = {e.code() for e in errors}
    text = "; ".join(dict.fromkeys(e.str() for e in errors)) or "no answer"
    if KafkaError._AUTHENTICATION in codes:
        return (
            "auth",
            f"the brokers refused the credentials: {text}",
            "check HUB_KAFKA__SASL_MECHANISM, HUB_KAFKA__SASL_USERNAME and "
            "HUB_KAFKA__SASL_PASSWORD (Confluent Cloud: an API key and secret with PLAIN)",
        )
    if KafkaError._SSL in codes:
        return (
            "tls",
            f"the TLS handshake failed: {text}",
            "check HUB_KAFKA__SSL_CA_LOCATION (the brokers' CA) and the client certificate; "
            "HUB_KAFKA__SSL_CHECK_HOSTNAME=false only for brokers addressed by IP",
        )
    return (
        "connect",
        f"no broker of {bootstrap} answered: {text}",
        "check HUB_KAFKA_BOOTSTRAP (host:port of the listener for clients), the network path "
        "and HUB_KAFKA__SECURITY_PROTOCOL (a TLS listener does not answer PLAINTEXT)",
    )


def _operations(ops: Iterable[Any] | None) -> set[AclOperation] | None:
    if ops is None:
        return None
    found = set(ops)
    if AclOperation.ALL in found:
        return set(AclOperation)
    return found


def _fetch_probe(settings: Settings, topic: str) -> KafkaError | None:
    """Whether this principal may read a topic: the error of a real fetch (None: allowed).

    Used where the broker does not report authorized operations. It reads from the end of
    partition 0 and commits nothing, so no group and no record is touched.
    """
    consumer = ephemeral_consumer(settings, "doctor")
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, high)])
        msg = consumer.poll(2.0)
        err: KafkaError | None = msg.error() if msg is not None else None
        if err is not None and err.code() != KafkaError._PARTITION_EOF:
            return err
        return None
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        return error
    finally:
        consumer.close()


def _check_configs(
    report: DoctorReport, admin: AdminApi, specs: Sequence[TopicSpec], hub_max: int
) -> None:
    """Config drift per topic, and each topic's record size limit against the producers'."""
    resources = [ConfigResource("topic", s.name) for s in specs]
    if not resources:
        return
    try:
        described = admin.describe_configs(resources)
    except KafkaException as exc:
        report.add("configs", "topics", "warn", f"cannot describe topic configs: {exc}")
        return
    for spec, res in zip(specs, resources, strict=True):
        try:
            actual = described[res].result()
        except KafkaException as exc:
            report.add(
                "configs",
                spec.name,
                "warn",
                f"cannot describe configs: {exc.args[0].str()}",
                "grant DESCRIBE_CONFIGS on the topic (or check it by hand)",
            )
            continue
        drift = [
            f"{key}={actual[key].value} (catalogue {want})"
            if key in actual
            else f"{key} not set (catalogue {want})"
            for key, want in spec.configs().items()
            if key not in actual or actual[key].value != want
        ]
        if drift:
            report.add(
                "configs",
                spec.name,
                "warn",
                ", ".join(drift),
                "hub topics apply (sets the catalogue's configs)",
            )
        else:
            report.add("configs", spec.name, "ok", "as in the catalogue")
        limit = actual.get("max.message.bytes")
        if limit is not None and limit.value is not None and int(limit.value) < hub_max:
            report.add(
                "size",
                spec.name,
                "warn",
                f"the topic takes records up to {limit.value} bytes, the hub's producers send "
                f"up to {hub_max}: a larger record would be refused",
                f"raise max.message.bytes on {spec.name} to {hub_max} or set "
                f"HUB_KAFKA__MESSAGE_MAX_BYTES={limit.value}",
            )


def _check_broker_size(report: DoctorReport, admin: AdminApi, metadata: Any, hub_max: int) -> None:
    brokers = list(getattr(metadata, "brokers", {}) or {})
    if not brokers:
        return
    res = ConfigResource("broker", str(brokers[0]))
    try:
        entry = admin.describe_configs([res])[res].result().get("message.max.bytes")
    except (KafkaException, KeyError) as exc:
        report.add("size", "broker", "warn", f"cannot read the broker's message.max.bytes: {exc}")
        return
    if entry is None or entry.value is None:
        report.add("size", "broker", "warn", "the broker does not report message.max.bytes")
    elif int(entry.value) < hub_max:
        report.add(
            "size",
            "broker",
            "warn",
            f"the broker's message.max.bytes is {entry.value}, the hub's producers send up "
            f"to {hub_max}",
            f"set HUB_KAFKA__MESSAGE_MAX_BYTES={entry.value}",
        )
    else:
        report.add(
            "size", "broker", "ok", f"message.max.bytes {entry.value} >= the hub's {hub_max}"
        )


def _check_topic_acls(
    report: DoctorReport, admin: AdminApi, settings: Settings, names: list[str]
) -> None:
    if not names:
        return
    try:
        futures = admin.describe_topics(
            TopicCollection(names), include_authorized_operations=True, request_timeout=15
        )
    except KafkaException as exc:
        report.add("acl", "topics", "warn", f"cannot describe topics: {exc}")
        return
    for name in names:
        try:
            ops = _operations(futures[name].result().authorized_operations)
        except KafkaException as exc:
            report.add(
                "acl",
                name,
                "fail",
                f"cannot describe: {exc.args[0].str()}",
                f"grant DESCRIBE, READ and WRITE on topic {name} to the hub's principal",
            )
            continue
        if ops is None:
            # The broker does not report them (no authorizer, or an older broker): read for real.
            err = _fetch_probe(settings, name)
            if err is None:
                report.add(
                    "acl",
                    name,
                    "ok",
                    "read works (the broker reports no authorized operations: write unchecked)",
                )
            else:
                report.add(
                    "acl",
                    name,
                    "fail",
                    f"read refused: {err.str()}",
                    f"grant READ on topic {name} to the hub's principal",
                )
            continue
        missing = [op.name for op in TOPIC_OPERATIONS if op not in ops]
        if missing:
            report.add(
                "acl",
                name,
                "fail",
                f"the principal may not {', '.join(missing)}",
                f"grant {', '.join(missing)} on topic {name} to the hub's principal "
                f"(kafka-acls --add --allow-principal User:<hub> --operation <op> --topic {name})",
            )
        else:
            report.add("acl", name, "ok", "describe, read and write allowed")


def _check_group_acls(report: DoctorReport, admin: AdminApi, groups: list[str]) -> None:
    if not groups:
        return
    try:
        futures = admin.describe_consumer_groups(
            groups, include_authorized_operations=True, request_timeout=15
        )
    except KafkaException as exc:
        report.add("acl", "groups", "warn", f"cannot describe consumer groups: {exc}")
        return
    unreported: list[str] = []
    for group in groups:
        try:
            ops = _operations(futures[group].result().authorized_operations)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            status: Status = (
                "fail" if err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED else "warn"
            )
            report.add(
                "acl",
                f"group {group}",
                status,
                f"cannot describe: {err.str()}",
                f"grant READ and DESCRIBE on group {group} (or the prefix hub.) to the hub's "
                "principal",
            )
            continue
        if ops is None:
            unreported.append(group)
            continue
        missing = [op.name for op in GROUP_OPERATIONS if op not in ops]
        if missing:
            report.add(
                "acl",
                f"group {group}",
                "fail",
                f"the principal may not {', '.join(missing)} (committing needs READ)",
                f"grant {', '.join(missing)} on group {group} to the hub's principal",
            )
        else:
            report.add("acl", f"group {group}", "ok", "read (commit) and describe allowed")
    if unreported:
        # Joining a group to find out would disturb the running services: say it is unchecked.
        report.add(
            "acl",
            "groups",
            "warn",
            f"the broker reports no authorized operations for {len(unreported)} group(s): "
            "commits unchecked",
            "on a cluster with ACLs, grant READ on the groups listed in docs/deployment.md",
        )


def _check_changelog(
    report: DoctorReport,
    admin: AdminApi,
    settings: Settings,
    mutator: MutatorSettings,
    metadata: Any,
) -> None:
    # The changelog of the mutator's Faust table: `<HUB_MUTATOR_APP_ID>-entity-state-changelog`,
    # created by Faust at the first start.
    name = mutator.changelog_topic
    topic = metadata.topics.get(name)
    if topic is not None and topic.error is None:
        parts = len(topic.partitions)
        if parts != settings.topic_partitions:
            report.add(
                "topic",
                name,
                "fail",
                f"{parts} partitions, pim.snapshots has {settings.topic_partitions}: the table "
                "must be co-partitioned with the snapshots",
                f"recreate it with {settings.topic_partitions} partitions while the mutator is "
                "stopped (the mutator's state goes with it: it sees every entity as new)",
            )
        else:
            report.add("topic", name, "ok", f"the mutator's table changelog, {parts} partitions")
        return
    # Missing: Faust creates it, which needs CREATE for the hub's principal.
    ops: set[AclOperation] | None = None
    try:
        cluster = admin.describe_cluster(include_authorized_operations=True)
        ops = _operations(cluster.result().authorized_operations)
    except (KafkaException, AttributeError):
        ops = None
    if ops is not None and AclOperation.CREATE not in ops:
        report.add(
            "acl",
            name,
            "fail",
            "missing, and the principal may not CREATE topics: the mutator cannot make it",
            f"create it with {settings.topic_partitions} partitions and cleanup.policy=compact, "
            f"or grant CREATE on topics prefixed {mutator.app_id}-",
        )
    else:
        report.add(
            "topic",
            name,
            "warn",
            "missing: the mutator creates it at its first start",
            f"start `hub mutator` once, or create it with {settings.topic_partitions} "
            "partitions and cleanup.policy=compact",
        )


def hub_groups(mutator: MutatorSettings, drivers: Iterable[str]) -> list[str]:
    """The consumer groups the hub's services use."""
    names = known_groups(drivers)
    names += [mutator.group("fanout"), "hub.dead.redrive"]
    return sorted(set(names))


def diagnose(
    settings: Settings,
    *,
    mutator: MutatorSettings | None = None,
    drivers: Iterable[str] = ("magento2", "webhook", "log"),
    specs: Sequence[TopicSpec] | None = None,
    profile: str = "default",
    admin: AdminApi | None = None,
    timeout_s: float = 15.0,
) -> DoctorReport:
    """Check the cluster for the hub; never raises for a cluster problem (it is a finding).

    `mutator`: the mutator's settings (its changelog and groups); None: the defaults.
    """
    mutator = mutator or default_mutator_settings()
    report = DoctorReport()
    try:
        conf = settings.kafka_config()
    except ValueError as exc:
        report.add("config", "kafka", "fail", str(exc), "see docs/deployment.md, Production Kafka")
        return report
    report.add(
        "config", "kafka", "ok", f"{conf['security.protocol']} to {conf['bootstrap.servers']}"
    )
    try:
        faust_broker_options(settings)
        report.add("config", "mutator", "ok", "the mutator's client gets the same settings")
    except (UnsupportedByMutator, ValueError, RuntimeError, OSError) as exc:
        report.add(
            "config",
            "mutator",
            "fail",
            str(exc),
            "use settings both clients support (docs/deployment.md, Production Kafka)",
        )
    errors: list[KafkaError] = []
    if admin is None:
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient(settings.kafka_config({"error_cb": errors.append, "log_level": 0}))
        except KafkaException as exc:
            report.add(
                "config",
                "kafka",
                "fail",
                f"the client refused the configuration: {exc.args[0].str()}",
                "fix or remove the property it names (librdkafka's CONFIGURATION.md lists them)",
            )
            return report
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        check, detail, fix = _classify(errors or [exc.args[0]], conf["bootstrap.servers"])
        report.add(check, "cluster", "fail", detail, fix)
        return report
    auth_errors = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    if auth_errors:
        check, detail, fix = _classify(auth_errors, conf["bootstrap.servers"])
        report.add(check, "cluster", "fail", detail, fix)
        return report
    report.add("connect", "cluster", "ok", f"{len(metadata.brokers)} broker(s) answered")

    wanted = list(specs) if specs is not None else profile_catalogue(settings, profile)
    present: list[TopicSpec] = []
    for spec in wanted:
        topic = metadata.topics.get(spec.name)
        if topic is None:
            report.add(
                "topic",
                spec.name,
                "fail",
                "missing",
                "hub topics apply (creates every missing topic of the catalogue)",
            )
            continue
        if topic.error is not None:
            report.add(
                "topic",
                spec.name,
                "fail",
                f"the broker says: {topic.error.str()}",
                f"grant DESCRIBE on topic {spec.name} to the hub's principal",
            )
            continue
        present.append(spec)
        partitions = len(topic.partitions)
        if partitions != spec.partitions:
            report.add(
                "topic",
                spec.name,
                "fail",
                f"{partitions} partitions, the hub expects {spec.partitions}",
                "entity-keyed topics must share one partition count: set HUB_TOPIC_PARTITIONS="
                f"{partitions} if every hub topic has {partitions}, otherwise recreate the topic "
                "(docs/deployment.md, Partitions)",
            )
        else:
            report.add("topic", spec.name, "ok", f"{partitions} partitions")
    _check_changelog(report, admin, settings, mutator, metadata)
    hub_max = settings.kafka.message_max_bytes
    _check_configs(report, admin, present, hub_max)
    _check_broker_size(report, admin, metadata, hub_max)
    _check_topic_acls(report, admin, settings, [s.name for s in present])
    _check_group_acls(report, admin, hub_groups(mutator, drivers))
    return report
