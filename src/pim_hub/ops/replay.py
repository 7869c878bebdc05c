"""`hub replay`: read hub.mutations again (by time or offsets) and fan it out anew as replay jobs.

Replay job ids. A live job's id is uuid5(mutation id + integration id); receivers that
deduplicate on it (the webhook's Idempotency-Key) would swallow a replay that reused it. A
replay job's id is `rerun_job_id(mutation id, integration id, run id)`: new for every replay
run, and the same again when a run is repeated with the same `--run-id` (so a replay that was
interrupted can be run again without doubling what was already delivered).

The reader assigns partitions itself and never commits, so no production group moves.

Lanes. By default every replay and resync job goes to the bulk lane (`low`, see
pim_hub.ops.dispatchers.BULK_PRIORITY), whatever priority fan-out would give it: a replay
after an incident can be millions of jobs, and on `immediate` (where fan-out puts prices,
stock and deletions) they would queue ahead of the live changes that lane exists for.
`--priority keep` keeps fan-out's priorities, `--priority NAME` uses another level of the
queue map. The job record's `priority` names the lane it is published to, because a
dispatcher delivers only the jobs of its own priority (and retries and redrives follow it).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from pim_hub.ops.dispatchers import BULK_PRIORITY
from pim_hub.registry.model import IntegrationTarget
from pim_hub.runtime.kafka import Headers, make_producer
from pim_hub.runtime.logread import (
    TP,
    OffsetsError,
    ephemeral_consumer,
    log_bounds,
    partitions_of,
    scan,
    timestamp_ms,
)
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import ordering, topics
from pim_hub.schemas.errors import PermanentError, SchemaError
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.processing import fanout_for

logger = logging.getLogger(__name__)

#: Namespace of replay and resync job ids; never change it (a repeated run must give the same ids).
NS_RERUN = uuid.UUID("0c6f5e0a-3b7d-5f4e-8a61-4b2d9e7c1f08")

#: Records stamped this long after --until still get read (producer clocks differ a little);
#: a partition stops at the first record past it.
UNTIL_SKEW_MS = 60_000

Mode = Literal["guarded", "force"]
JOB_MODES: dict[str, str] = {"guarded": "replay-guarded", "force": "replay-force"}


#: `--priority keep`: each job on the lane fan-out gives it, as live jobs.
KEEP_PRIORITY = "keep"


class ReplayError(PermanentError):
    """A replay that cannot run as asked."""


def resolve_priority(choice: str, levels: Mapping[str, int]) -> str | None:
    """The lane every job of a replay or resync goes to; None: fan-out's (`keep`).

    Raises:
        ReplayError: a name the queue map does not define (checked before any work).
    """
    if choice == KEEP_PRIORITY:
        return None
    if choice in levels:
        return choice
    known = ", ".join(sorted(levels, key=lambda name: levels[name]))
    if choice == BULK_PRIORITY:
        raise ReplayError(
            f"the queue map (HUB_QUEUE_MAP_FILE) has no priority {BULK_PRIORITY!r}, where replays"
            f" and resyncs go by default: pass --priority with one of {known}, or keep"
        )
    raise ReplayError(
        f"--priority {choice!r}: not a priority of the queue map; use keep or {known}"
    )


def rerun_job_id(mutation_id: str, integration_id: str, run_id: str) -> str:
    """Job id of a replayed or resynced job: unlike live ids, it differs per run."""
    return str(uuid.uuid5(NS_RERUN, f"{mutation_id}/{integration_id}/{run_id}"))


def new_run_id() -> str:
    """A fresh run id (short, for humans to quote)."""
    return uuid.uuid4().hex[:12]


def key_matches(entity_key: str, pattern: str | None) -> bool:
    """A glob on the entity key; a pattern without ':' also matches the part after the type.

    `product:*`, `category:shoe*`, `*:shoes` and `shoe*` (any type) all work.
    """
    if pattern is None:
        return True
    if fnmatch.fnmatchcase(entity_key, pattern):
        return True
    if ":" not in pattern:
        _, _, ident = entity_key.partition(":")
        return fnmatch.fnmatchcase(ident, pattern)
    return False


@dataclass(frozen=True)
class EntityFilter:
    """Which entities a replay or resync covers."""

    entity_types: frozenset[str] | None = None
    key_pattern: str | None = None

    def matches(self, entity_key: str) -> bool:
        """True when the key's type and the pattern fit."""
        etype, _, _ = entity_key.partition(":")
        if self.entity_types is not None and etype not in self.entity_types:
            return False
        return key_matches(entity_key, self.key_pattern)


def parse_offsets(values: Sequence[str], partitions: Iterable[int], what: str) -> dict[int, int]:
    """`--from-offset`/`--to-offset` values: `N` (every partition) or `P:N` (one partition).

    Raises:
        ReplayError: a value that is not a number, or an unknown partition.
    """
    parts = sorted(partitions)
    out: dict[int, int] = {}
    for value in values:
        p_text, sep, n_text = value.partition(":")
        try:
            if sep:
                p, n = int(p_text), int(n_text)
                if p not in parts:
                    raise ReplayError(f"{what} {value}: no partition {p} (have 0..{parts[-1]})")
                out[p] = n
            else:
                n = int(value)
                out.update(dict.fromkeys(parts, n))
        except ValueError as exc:
            raise ReplayError(f"{what} {value!r}: expected N or PARTITION:N") from exc
        if n < 0:
            raise ReplayError(f"{what} {value!r}: offsets are not negative")
    return out


def plan_ranges(
    bounds: Mapping[TP, tuple[int, int]],
    from_offsets: Mapping[int, int],
    to_offsets: Mapping[int, int],
    time_starts: Mapping[TP, int] | None = None,
) -> dict[TP, tuple[int, int]]:
    """Offsets to read per partition: within the log, after --from/--since, before --to."""
    out = {}
    for tp, (low, end) in bounds.items():
        start = max(low, from_offsets.get(tp[1], low))
        if time_starts is not None and tp in time_starts:
            start = max(start, time_starts[tp])
        stop = min(end, to_offsets.get(tp[1], end))
        out[tp] = (min(start, stop), stop)
    return out


class Pacer:
    """Spaces calls to `wait()` at most `rate` per second (`--rate`); 0 means no limit."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self.sleep = sleep
        self._next: float | None = None

    def wait(self) -> None:
        """Block until the next call is allowed."""
        if not self.interval:
            return
        now = self.clock()
        if self._next is None or self._next < now:
            self._next = now  # idle time is not saved up into a burst
        if self._next > now:
            self.sleep(self._next - now)
        self._next += self.interval


class Progress(Protocol):
    """Where progress goes (a rich progress bar on the command line)."""

    def start(self, total: int) -> None:
        """The number of offsets to pass over."""

    def advance(self, n: int) -> None:
        """n more offsets passed over."""


@dataclass
class RunReport:
    """What a replay or resync did (or, on a dry run, would do)."""

    run_id: str
    mode: str
    dry_run: bool
    read: int = 0  # records or entities read
    matched: int = 0  # mutations or entities that passed the filters
    jobs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (integration, priority)
    invalid: list[str] = field(default_factory=list)  # where and why, never payloads
    source: str = ""
    #: the priority every job is published on; None: the one fan-out gives it (`keep`)
    lane: str | None = None
    #: jobs per priority fan-out gives them (what `keep` would publish on)
    fanout: Counter[str] = field(default_factory=Counter)

    def route(self, priority: str, job: dict[str, Any]) -> str:
        """The priority a job fan-out put on `priority` is published on (its record too)."""
        self.fanout[priority] += 1
        if self.lane is None:
            return priority
        job["priority"] = self.lane  # a dispatcher delivers only its own priority's jobs
        return self.lane

    def plan(self, planned: Iterable[tuple[str, str]]) -> None:
        """Count a dry run's (integration, fan-out priority) pairs on the lanes they would get."""
        for integration, priority in planned:
            self.fanout[priority] += 1
            self.jobs[(integration, self.lane or priority)] += 1

    def lane_line(self) -> str:
        """Which lanes the jobs go to, and what fan-out would have given them."""
        if self.lane is None:
            return "  priority: as fan-out gives (--priority keep)"
        given = ", ".join(f"{p} {n}" for p, n in sorted(self.fanout.items()))
        return f"  priority: {self.lane} for every job" + (
            f" (fan-out would give {given})" if given else ""
        )

    @property
    def total_jobs(self) -> int:
        """Jobs published (or counted on a dry run)."""
        return sum(self.jobs.values())

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "source": self.source,
            "priority": self.lane or KEEP_PRIORITY,
            "fanout_priorities": dict(sorted(self.fanout.items())),
            "read": self.read,
            "matched": self.matched,
            "jobs": [
                {"integration": i, "priority": p, "jobs": n}
                for (i, p), n in sorted(self.jobs.items())
            ],
            "total_jobs": self.total_jobs,
            "invalid": self.invalid,
        }

    def lines(self) -> list[str]:
        """Human-readable summary."""
        verb = "would publish" if self.dry_run else "published"
        out = [
            f"run {self.run_id} ({self.mode}{', ' + self.source if self.source else ''}):"
            f" {self.read} read, {self.matched} matched",
            self.lane_line(),
        ]
        if self.jobs:
            out.append(f"  {'integration':28} {'priority':10} {'jobs':>7}")
            for (integ, prio), n in sorted(self.jobs.items()):
                out.append(f"  {integ:28} {prio:10} {n:>7}")
        on = f" on {self.lane}" if self.lane else ""
        out.append(f"{verb} {self.total_jobs} job(s){on}" + (" (dry run)" if self.dry_run else ""))
        for line in self.invalid[:20]:
            out.append(f"  skipped: {line}")
        if len(self.invalid) > 20:
            out.append(f"  ... and {len(self.invalid) - 20} more skipped")
        return out


def choose_targets(
    targets: Sequence[IntegrationTarget], wanted: Sequence[str]
) -> list[IntegrationTarget]:
    """The named integrations (each must exist and be enabled), or every enabled one.

    Raises:
        ReplayError: an unknown (or driverless) or disabled integration was named.
    """
    by_id = {t.integration_id: t for t in targets}
    if not wanted:
        return [t for t in targets if t.enabled]
    missing = [w for w in wanted if w not in by_id]
    if missing:
        raise ReplayError(
            f"unknown integration(s) {', '.join(missing)} (or their driver is not installed);"
            f" known: {', '.join(sorted(by_id)) or 'none'}"
        )
    disabled = [w for w in wanted if not by_id[w].enabled]
    if disabled:
        raise ReplayError(f"integration(s) {', '.join(disabled)} disabled; enable them first")
    return [by_id[w] for w in dict.fromkeys(wanted)]


def load_targets(settings: Settings, wanted: Sequence[str]) -> list[IntegrationTarget]:
    """Targets from the registry in PostgreSQL (see choose_targets)."""
    from pim_hub.registry.store import load_targets_async

    url = settings.require_database()
    return choose_targets(asyncio.run(load_targets_async(url)), wanted)


class JobPublisher:
    """Produces jobs without waiting for each ack; `close()` waits for all and reports failures."""

    def __init__(self, settings: Settings, serde: Serde, topic_of: Callable[[str], str]) -> None:
        self.producer: Producer = make_producer(settings)
        self.serde = serde
        self.topic_of = topic_of
        self.errors: list[str] = []
        self.sent = 0

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.errors.append(str(err))

    def publish(
        self,
        priority: str,
        key: str,
        job: dict[str, Any],
        mutation: bytes | None = None,
        prev: tuple[str, int] | None = None,
    ) -> None:
        """Queue one job on its priority's topic (`mutation`: its mutation as read, if it was;
        `prev`: the job of the same entity and integration it must not overtake)."""
        topic = self.topic_of(priority)
        value = self.serde.encode_embedding("Job", job, "mutation", mutation, topic=topic)
        headers: Headers | None = (
            [(ordering.PREV_JOB, ordering.prev_job_value(*prev))] if prev else None
        )
        while True:
            try:
                self.producer.produce(
                    topic, value, key=key, headers=headers, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                self.producer.poll(0.2)  # the local queue is full: let acks drain it
        self.producer.poll(0)
        self.sent += 1

    def close(self, timeout_s: float = 60.0) -> None:
        """Wait for every ack.

        Raises:
            ReplayError: some jobs were not acknowledged (the run can be repeated with the
                same run id: jobs already delivered are recognised by their id).
        """
        left = self.producer.flush(timeout_s)
        if left or self.errors:
            raise ReplayError(
                f"{left + len(self.errors)} of {self.sent} job(s) not acknowledged"
                f" ({'; '.join(self.errors[:3]) or 'timeout'}); run again with the same --run-id"
            )


@dataclass(frozen=True)
class ReplayOptions:
    """What `hub replay` was asked to do."""

    integrations: tuple[str, ...] = ()
    mode: Mode = "guarded"
    since: datetime | None = None
    until: datetime | None = None
    from_offsets: tuple[str, ...] = ()
    to_offsets: tuple[str, ...] = ()
    filter: EntityFilter = field(default_factory=EntityFilter)
    dry_run: bool = False
    rate: float = 0.0
    run_id: str | None = None
    #: a priority name for every job, or `keep` for fan-out's (resolve_priority)
    priority: str = BULK_PRIORITY


#: Mutation's first fields: mutation_id, entity_type, entity_key, operation; then changes.
_HEAD_FIELDS = 4


def _planning_fields(serde: Serde, value: bytes | None) -> dict[str, Any]:
    """What a dry run needs of a mutation: its key, type and operation, and an update's changes.

    A creation's changes list every value of the entity and its state is the whole entity;
    the priority of a creation does not depend on its changes (registry.priority), so only
    the first fields are read. A record of an older schema version is decoded whole.

    Raises:
        SchemaError: the record cannot be decoded.
    """
    head = serde.decode_head("Mutation", value, _HEAD_FIELDS, topic=topics.MUTATIONS)
    if head is None:
        return serde.decode("Mutation", value, topic=topics.MUTATIONS)
    if head["operation"] == "create":
        head["changes"] = []
        return head
    with_changes = serde.decode_head("Mutation", value, _HEAD_FIELDS + 1, topic=topics.MUTATIONS)
    if with_changes is None:  # not reached: the head was read with the same writer schema
        return serde.decode("Mutation", value, topic=topics.MUTATIONS)
    return with_changes


def replay(
    settings: Settings,
    options: ReplayOptions,
    progress: Progress | None = None,
    targets: Sequence[IntegrationTarget] | None = None,
) -> RunReport:
    """Read the mutation log in the chosen range and publish replay jobs (or count them).

    Raises:
        ReplayError: bad options, unknown integrations, jobs not acknowledged.
        OffsetsError: the topic is missing or the broker stopped answering.
    """
    from pim_hub.registry.queue_map import queue_map_from_settings

    if options.mode not in JOB_MODES:
        raise ReplayError(f"unknown mode {options.mode!r}; use guarded or force")
    if options.since and options.until and options.since >= options.until:
        raise ReplayError("--since must be before --until")
    queue_map = queue_map_from_settings(settings)
    lane = resolve_priority(options.priority, queue_map.levels)
    chosen = list(targets) if targets is not None else load_targets(settings, options.integrations)
    if targets is not None:
        chosen = choose_targets(chosen, options.integrations)
    if not chosen:
        raise ReplayError("no enabled integration to replay to")
    job_mode = JOB_MODES[options.mode]
    report = RunReport(options.run_id or new_run_id(), job_mode, options.dry_run, lane=lane)
    serde = Serde(settings.registry_config())
    fanout = fanout_for(queue_map, serde)
    since_ms = int(options.since.timestamp() * 1000) if options.since else None
    until_ms = int(options.until.timestamp() * 1000) if options.until else None

    consumer = ephemeral_consumer(settings, "replay")
    try:
        parts = partitions_of(consumer, topics.MUTATIONS)
        bounds = log_bounds(consumer, [(topics.MUTATIONS, p) for p in parts])
        time_starts = None
        if since_ms is not None:
            # The broker's answer is only a lower bound here (see pim_hub.runtime.logread); records before
            # --since are dropped below by their timestamp.
            wanted = [
                TopicPartition(tp[0], tp[1], since_ms) for tp, (lo, hi) in bounds.items() if hi > lo
            ]
            # librdkafka refuses an empty list (an empty log): nothing to look up then.
            asked = consumer.offsets_for_times(wanted, timeout=10) if wanted else []
            time_starts = {
                (t.topic, t.partition): (
                    bounds[(t.topic, t.partition)][1] if t.offset < 0 else t.offset
                )
                for t in asked
            }
        ranges = plan_ranges(
            bounds,
            parse_offsets(options.from_offsets, parts, "--from-offset"),
            parse_offsets(options.to_offsets, parts, "--to-offset"),
            time_starts,
        )
        if progress is not None:
            progress.start(sum(hi - lo for lo, hi in ranges.values()))
        publisher = None if options.dry_run else JobPublisher(settings, serde, queue_map.topic)
        pacer = Pacer(options.rate)
        plans: dict[tuple[str, str], list[tuple[str, str]]] = {}
        #: job key (integration and entity) -> the id of the last job published for it
        last_job: dict[str, tuple[str, int]] = {}

        def past_until(msg: Message) -> bool:
            stamp = timestamp_ms(msg)
            return until_ms is not None and stamp is not None and stamp >= until_ms + UNTIL_SKEW_MS

        for msg in scan(
            consumer,
            ranges,
            on_progress=progress.advance if progress is not None else None,
            stop_partition=past_until,
        ):
            report.read += 1
            stamp = timestamp_ms(msg)
            if stamp is not None and (
                (since_ms is not None and stamp < since_ms)
                or (until_ms is not None and stamp >= until_ms)
            ):
                continue
            raw_key = msg.key()
            key = raw_key.decode(errors="replace") if raw_key is not None else ""
            if not options.filter.matches(key):
                continue
            try:
                if options.dry_run:
                    mutation = _planning_fields(serde, msg.value())
                else:
                    mutation = serde.decode("Mutation", msg.value(), topic=topics.MUTATIONS)
            except SchemaError as exc:
                report.invalid.append(
                    f"{topics.MUTATIONS}[{msg.partition()}]@{msg.offset()}: {exc}"
                )
                logger.error(
                    "undecodable mutation not replayed",
                    extra={"partition": msg.partition(), "offset": msg.offset()},
                )
                continue
            if not options.filter.matches(mutation["entity_key"]):
                continue
            report.matched += 1
            if publisher is None:
                if mutation["changes"]:
                    planned = fanout.priorities_for(mutation, chosen)
                else:
                    # Without changes (creations as read above, deletions) the jobs depend
                    # on the entity type and operation alone: planned once for each.
                    kind = (mutation["entity_type"], mutation["operation"])
                    if kind not in plans:
                        plans[kind] = fanout.priorities_for(mutation, chosen)
                    planned = plans[kind]
                report.plan(planned)
                continue
            for priority, job_key, job in fanout.jobs_for(mutation, chosen, mode=job_mode):
                priority = report.route(priority, job)
                report.jobs[(job["integration_id"], priority)] += 1
                job["job_id"] = rerun_job_id(
                    mutation["mutation_id"], job["integration_id"], report.run_id
                )
                pacer.wait()
                # Each job names the run's previous job of its entity and integration: a
                # dispatcher holds it until that one finished, whatever their lanes.
                publisher.publish(priority, job_key, job, msg.value(), prev=last_job.get(job_key))
                last_job[job_key] = (job["job_id"], int(time.time() * 1000))
        if publisher is not None:
            publisher.close()
    finally:
        consumer.close()
    logger.info(
        "replay finished",
        extra={
            "run_id": report.run_id,
            "jobs": report.total_jobs,
            "dry_run": options.dry_run,
            "priority": options.priority,
        },
    )
    return report


__all__ = [
    "KEEP_PRIORITY",
    "EntityFilter",
    "OffsetsError",
    "Pacer",
    "ReplayError",
    "ReplayOptions",
    "RunReport",
    "choose_targets",
    "key_matches",
    "parse_offsets",
    "plan_ranges",
    "replay",
    "rerun_job_id",
    "resolve_priority",
]
