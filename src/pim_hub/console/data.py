"""What the console's pages show, read from the same PostgreSQL read models and Kafka topics
as the CLI (the deliveries and entity projections, the registry, hub.jobs.dead through its read
model, the consumer groups' offsets). Nothing here acts: actions are in
`pim_hub.console.actions`; the only write is the dead-letter read model catching up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from confluent_kafka import KafkaException
from psycopg.rows import dict_row

from pim_hub.drivers.discovery import DriverCatalogue
from pim_hub.ops.dead import DeadLetter, PendingGroup, pending_groups, sync_dead_letters
from pim_hub.ops.dispatchers import Coverage, coverage, needed_dispatchers
from pim_hub.ops.exporter import LagReader, known_groups
from pim_hub.ops.offsets import ACTIVE_STATES
from pim_hub.registry.limits import InvalidRateLimit, RateLimit
from pim_hub.registry.model import Integration
from pim_hub.registry.queue_map import queue_map_from_settings
from pim_hub.registry.secrets import mask_config
from pim_hub.registry.store import list_integrations
from pim_hub.runtime.kafka import admin_client
from pim_hub.runtime.logread import ephemeral_consumer, log_bounds, partitions_of, scan
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics

logger = logging.getLogger(__name__)

#: Every group the hub runs (the exporter's pattern, plus the fan-out's own group).
GROUP_PATTERN = r"^(hub\.dispatch\..+|hub-mutator(-fanout)?|hub\.projector\..+|hub\.ingest\..+)$"
_DISPATCH = re.compile(r"^hub\.dispatch\.(?P<driver>[^.]+)\.(?P<priority>[^.]+)$")


def stage_of(group: str) -> str:
    """The pipeline stage a consumer group belongs to."""
    m = _DISPATCH.match(group)
    if m:
        return f"dispatch {m['driver']} / {m['priority']}"
    if group == "hub-mutator":
        return "mutator"
    if group == "hub-mutator-fanout":
        return "fan-out"
    if group.startswith("hub.ingest."):
        return "ingest"
    if group.startswith("hub.projector."):
        return "projector " + group.removeprefix("hub.projector.")
    return group


@dataclass
class GroupRow:
    """One consumer group on the overview."""

    group: str
    stage: str
    state: str
    members: int
    lag: int
    lag_seconds: float

    @property
    def active(self) -> bool:
        """The group has (or is admitting) members: `hub offsets`' own test. Some brokers
        (Tansu) describe a stable group without listing its members, so the state counts too."""
        return self.members > 0 or self.state in ACTIVE_STATES

    @property
    def members_text(self) -> str:
        """The member count, or "yes" when only the group's state says it has members."""
        if self.members:
            return str(self.members)
        return "yes" if self.active else "0"

    @property
    def stuck(self) -> bool:
        """Work waits and nobody consumes it."""
        return self.lag > 0 and not self.active


#: The last hour in buckets of this many minutes, per integration.
BUCKET_MINUTES = 5


@dataclass
class IntegrationCounts:
    """Latest status counts of one integration's jobs, overall and over the last hour."""

    integration_id: str
    total: dict[str, int] = field(default_factory=dict)
    last_hour: dict[str, int] = field(default_factory=dict)
    #: (delivered, retrying, dead) per 5-minute bucket of the last hour, oldest first
    buckets: list[tuple[int, int, int]] = field(
        default_factory=lambda: [(0, 0, 0)] * (60 // BUCKET_MINUTES)
    )

    @property
    def peak(self) -> int:
        """The busiest bucket's total (at least 1: the bars' scale)."""
        return max([1, *(sum(b) for b in self.buckets)])


@dataclass
class Overview:
    """The overview page."""

    groups: list[GroupRow]
    integrations: list[IntegrationCounts]
    per_minute: list[dict[str, Any]]  # the last hour's delivered/failed per minute
    problems: list[str]
    errors: list[str]  # what could not be read (the page still shows the rest)
    dispatchers: list[Coverage] = field(default_factory=list)  # what the integrations need


def _describe_groups(settings: Settings, groups: list[str]) -> dict[str, tuple[str, int]]:
    if not groups:
        return {}
    admin = admin_client(settings)
    out: dict[str, tuple[str, int]] = {}
    for group, fut in admin.describe_consumer_groups(groups, request_timeout=10).items():
        try:
            described = fut.result()
        except KafkaException:
            out[group] = ("UNKNOWN", 0)
            continue
        state = getattr(described.state, "name", str(described.state)).upper()
        out[group] = (state, len(described.members or []))
    return out


def group_rows(settings: Settings, drivers: Iterable[str]) -> list[GroupRow]:
    """Every hub consumer group with its members and lag (messages and seconds)."""
    reader = LagReader(settings, group_pattern=GROUP_PATTERN, known=known_groups(drivers))
    try:
        lags = reader.read()
    finally:
        reader.close()
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    by_group: dict[str, tuple[int, float]] = {}
    for lag in lags:
        messages, seconds = by_group.get(lag.group, (0, 0.0))
        by_group[lag.group] = (messages + lag.messages, max(seconds, lag.seconds(now_ms)))
    states = _describe_groups(settings, sorted(by_group))
    rows = [
        GroupRow(g, stage_of(g), *states.get(g, ("UNKNOWN", 0)), messages, seconds)
        for g, (messages, seconds) in by_group.items()
    ]
    return sorted(rows, key=lambda r: (not r.stuck, r.stage, r.group))


def integration_counts(url: str) -> list[IntegrationCounts]:
    """Latest status per job, counted per integration (all time and the last hour)."""
    with psycopg.connect(url) as conn:
        total = conn.execute(
            "SELECT integration_id, status, count(*) FROM deliveries GROUP BY 1, 2"
        ).fetchall()
        recent = conn.execute(
            "SELECT integration_id, status, count(*) FROM deliveries"
            " WHERE occurred_at > now() - interval '1 hour' GROUP BY 1, 2"
        ).fetchall()
        buckets = conn.execute(
            "SELECT integration_id,"
            " floor(extract(epoch FROM now() - occurred_at) / %s)::int AS ago,"
            " count(*) FILTER (WHERE status = 'delivered'),"
            " count(*) FILTER (WHERE status IN ('retrying', 'failed')),"
            " count(*) FILTER (WHERE status = 'dead')"
            " FROM deliveries WHERE occurred_at > now() - interval '1 hour' GROUP BY 1, 2",
            (BUCKET_MINUTES * 60,),
        ).fetchall()
    out: dict[str, IntegrationCounts] = {}
    for iid, status, n in total:
        out.setdefault(iid, IntegrationCounts(iid)).total[status] = int(n)
    for iid, status, n in recent:
        out.setdefault(iid, IntegrationCounts(iid)).last_hour[status] = int(n)
    slots = 60 // BUCKET_MINUTES
    for iid, ago, delivered, retrying, dead in buckets:
        counts = out.setdefault(iid, IntegrationCounts(iid))
        index = slots - 1 - min(max(int(ago), 0), slots - 1)  # oldest first
        counts.buckets[index] = (int(delivered), int(retrying), int(dead))
    return [out[k] for k in sorted(out)]


def per_minute(url: str) -> list[dict[str, Any]]:
    """Jobs that reached a final or failing status in each minute of the last hour."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT date_trunc('minute', occurred_at) AS minute,"
            " count(*) FILTER (WHERE status = 'delivered') AS delivered,"
            " count(*) FILTER (WHERE status IN ('retrying', 'failed')) AS retrying,"
            " count(*) FILTER (WHERE status = 'dead') AS dead"
            " FROM deliveries WHERE occurred_at > now() - interval '1 hour'"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall()


def dispatcher_coverage(settings: Settings, integrations: list[Integration]) -> list[Coverage]:
    """The dispatcher groups the enabled integrations need and what the broker says of each
    (`hub integrations dispatchers`)."""
    return coverage(settings, needed_dispatchers(integrations, queue_map_from_settings(settings)))


def overview(settings: Settings, catalogue: DriverCatalogue) -> Overview:
    """Stages, integrations and whatever is stuck."""
    errors: list[str] = []
    url = settings.require_database()
    integrations = list_integrations(url)
    drivers = sorted({i.driver for i in integrations} | set(catalogue.drivers))
    try:
        groups = group_rows(settings, drivers)
    except Exception as exc:  # the broker may be down: the database part still helps
        logger.warning("cannot read consumer groups", extra={"error": str(exc)})
        groups, errors = [], [f"consumer groups: {exc}"]
    needs = dispatcher_coverage(settings, integrations)
    problems = [
        f"{g.stage}: {g.lag} message(s) waiting in group {g.group} and no consumer"
        for g in groups
        if g.stuck
    ]
    problems += [
        f"priority {c.need.priority} of driver {c.need.driver}: {c.uncovered} message(s) on "
        f"{c.need.topic} and no dispatcher has ever run for it (start `{c.need.command}`); "
        f"needed by {', '.join(c.need.integrations)}"
        for c in needs
        if c.missing
    ]
    errors += [f"dispatcher {c.need.group}: {c.error}" for c in needs if c.error]
    return Overview(
        groups, integration_counts(url), per_minute(url), problems, errors, dispatchers=needs
    )


@dataclass
class DeadPage:
    """The dead-letter page: the read model's groups, and what could not be read (the page
    then shows the dead letters copied before)."""

    groups: list[PendingGroup]
    error: str | None = None


def catch_up_dead(settings: Settings) -> str | None:
    """Copy the dead letters added since the last page load; the error, when it failed."""
    try:
        sync_dead_letters(settings)
    except Exception as exc:  # the broker may be down: what was copied before still helps
        logger.warning("cannot read new dead letters", extra={"error": str(exc)})
        return f"new dead letters could not be read ({type(exc).__name__}: {exc})"
    return None


def dead_page(settings: Settings, integration: str, reason: str, limit: int) -> DeadPage:
    """Dead letters not yet redriven, grouped by integration and error kind, from the read
    model after copying what hub.jobs.dead gained since the last load (never a full scan)."""
    error = catch_up_dead(settings)
    groups = pending_groups(settings.require_database(), integration, reason, limit)
    return DeadPage(groups, error)


def entity_of(letter: DeadLetter) -> str:
    """The entity key of a dead letter's job."""
    job = letter.job or {}
    return str((job.get("mutation") or {}).get("entity_key", "?"))


@dataclass
class IntegrationView:
    """One integration as the console shows it: secrets masked."""

    integration: Integration
    masked_config: Any
    rate_limit: str
    dispatchers: list[GroupRow]  # the groups of its driver the broker knows
    needs: list[Coverage] = field(default_factory=list)  # the groups it needs, and their state

    @property
    def config_json(self) -> str:
        """The masked config, indented."""
        return orjson.dumps(self.masked_config, option=orjson.OPT_INDENT_2, default=str).decode()


def describe_rate_limit(config: dict[str, Any], default_concurrent: int) -> str:
    """`20/s, 4 concurrent, burst 20` as the dispatcher reads it, or why it cannot."""
    try:
        limit = RateLimit.from_config(config, default_concurrent)
    except InvalidRateLimit as exc:
        return f"invalid: {exc}"
    rate = "unlimited" if limit.requests_per_s is None else f"{limit.requests_per_s:g}/s"
    if "rate_limit" not in config:
        rate = "none set (unlimited)"
    return f"{rate}, {limit.concurrent} concurrent, burst {limit.burst}"


def integration_views(
    settings: Settings,
    catalogue: DriverCatalogue,
    groups: list[GroupRow] | None,
    needs: list[Coverage] | None = None,
) -> list[IntegrationView]:
    """Every integration with masked config, rate limit and its driver's dispatcher groups."""
    out = []
    for integ in list_integrations(settings.require_database()):
        cls = catalogue.drivers.get(integ.driver)
        masked = mask_config(integ.config, cls.config_model if cls else None)
        serving = [
            g
            for g in groups or []
            if (m := _DISPATCH.match(g.group)) and m["driver"] == integ.driver
        ]
        mine = [c for c in needs or [] if integ.id in c.need.integrations]
        limit = describe_rate_limit(integ.config, settings.dispatcher_max_in_flight)
        out.append(IntegrationView(integ, masked, limit, serving, mine))
    return out


@dataclass
class InvalidSnapshot:
    """One record of pim.snapshots.invalid: a refused snapshot, event or producer's patch
    (its reason, never its payload)."""

    at: datetime
    partition: int
    offset: int
    key: str
    entity_type: str
    kind: str  # error.type: invalid_snapshot, invalid_patch, ...
    reason: str
    code: str | None = None  # error.reason: not_owner, unseen_entity, ...
    record: str = "bytes"  # what it is: snapshot, patch, json or bytes
    source_topic: str | None = None  # the topic it came from, when it says
    patch_source: str | None = None  # a patch's producing source (erp, ...)


def invalid_snapshots(settings: Settings, limit: int) -> list[InvalidSnapshot]:
    """The latest set-aside records, newest first, read as `hub invalid list` reads them."""
    from pim_hub.ops.invalid import decode
    from pim_hub.schemas.serde import Serde

    serde = Serde(settings.registry_config())
    consumer = ephemeral_consumer(settings, "console")
    try:
        tps = [
            (topics.SNAPSHOTS_INVALID, p) for p in partitions_of(consumer, topics.SNAPSHOTS_INVALID)
        ]
        bounds = log_bounds(consumer, tps)
        ranges = {tp: (max(lo, hi - limit), hi) for tp, (lo, hi) in bounds.items()}
        out = []
        for msg in scan(consumer, ranges):
            rec = decode(msg, serde)
            out.append(
                InvalidSnapshot(
                    rec.at,
                    rec.partition,
                    rec.offset,
                    rec.key or "",
                    rec.entity_type or (rec.key or "").partition(":")[0],
                    rec.error_type if rec.error_type != "unknown" else "invalid",
                    rec.headers.get("error.message", ""),
                    rec.code,
                    rec.kind,
                    rec.source_topic,
                    str(rec.patch.get("source")) if rec.patch is not None else None,
                )
            )
    finally:
        consumer.close()
    out.sort(key=lambda s: s.at, reverse=True)
    return out[:limit]


def entity_states(url: str | None, keys: list[str]) -> dict[str, Any]:
    """The local model's current state of some entities (JSON text, indented)."""
    if not url or not keys:
        return {}
    try:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT entity_key, state FROM entities WHERE entity_key = ANY(%s)", (keys,)
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return {}
    return {
        k: orjson.dumps(s, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        for k, s in rows
    }


def audit_log(url: str, limit: int = 200) -> list[dict[str, Any]]:
    """The newest audit entries."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT at, actor, role, action, target, jobs, outcome, detail FROM console_audit"
            " ORDER BY at DESC, id DESC LIMIT %s",
            (limit,),
        ).fetchall()
