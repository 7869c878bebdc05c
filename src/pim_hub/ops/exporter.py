"""`hub exporter`: consumer lag per group, topic and partition, in messages and in seconds."""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pim_hub.ops.dispatchers import Coverage, coverage, needed_dispatchers
from pim_hub.runtime import metrics
from pim_hub.runtime.health import HEALTH
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.topics import PRIORITIES

logger = logging.getLogger(__name__)

TP = tuple[str, int]

#: Groups the hub runs; Tansu's DescribeGroups lists no members, so names are matched instead.
DEFAULT_GROUP_PATTERN = r"^(hub\.dispatch\..+|hub-mutator|hub\.projector\..+|hub\.ingest\..+)$"
#: Past this many unread records the listed end offset is trusted without reading to the end.
READ_TO_END_MAX = 1000
_DISPATCH = re.compile(r"^hub\.dispatch\.(?P<driver>[^.]+)\.(?P<priority>[^.]+)$")

COLLECT_SECONDS = Histogram(
    "pimhub_exporter_collect_seconds", "Time to collect the lag of every group once"
)
COLLECT_ERRORS = Counter("pimhub_exporter_errors", "Lag collections that failed")
LAST_SUCCESS = Gauge(
    "pimhub_exporter_last_success_timestamp_seconds", "When the lag was last collected"
)


@dataclass(frozen=True)
class PartitionLag:
    """The lag of one group on one partition."""

    group: str
    topic: str
    partition: int
    committed: int
    end: int
    oldest_unconsumed_ms: int | None  # record timestamp of the first unread record

    @property
    def messages(self) -> int:
        """Records after the committed offset."""
        return max(0, self.end - self.committed)

    def seconds(self, now_ms: int) -> float:
        """Age of the oldest unread record; 0 when the group is caught up."""
        if self.messages == 0 or self.oldest_unconsumed_ms is None:
            return 0.0
        return max(0.0, (now_ms - self.oldest_unconsumed_ms) / 1000)


def group_labels(group: str) -> dict[str, str]:
    """Bounded labels derived from a group name: the priority and driver of dispatch groups."""
    m = _DISPATCH.match(group)
    if m and m["priority"] in PRIORITIES:
        return {"priority": m["priority"], "driver": m["driver"]}
    return {"priority": "", "driver": ""}


def wanted_groups(listed: Iterable[str], known: Iterable[str], pattern: str) -> list[str]:
    """Groups to watch: listed by the broker or known by name, and matching the pattern."""
    rx = re.compile(pattern)
    return sorted({g for g in (*listed, *known) if rx.match(g)})


def known_groups(drivers: Iterable[str]) -> list[str]:
    """Group names the hub uses, for brokers that cannot list groups."""
    names = ["hub-mutator", "hub.projector.deliveries", "hub.projector.entities"]
    names += ["hub.ingest.enricher"]
    names += [f"hub.dispatch.{d}.{p}" for d in drivers for p in PRIORITIES]
    return names


@dataclass
class _Probe:
    first_ts_ms: int | None = None
    last_offset: int = -1
    eof: int | None = None


@dataclass
class LagReader:
    """Reads committed offsets and partition ends, and the first unread record's time."""

    settings: Settings
    group_pattern: str = DEFAULT_GROUP_PATTERN
    probe_timeout_s: float = 2.0
    #: Longest one reading spends looking up the time of groups' first unread records (a
    #: look-up that finds no record waits `probe_timeout_s`): with hundreds of groups, a
    #: reading must still end, and the lag in records not wait for the lag in seconds.
    stamp_budget_s: float = 5.0
    known: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.admin = AdminClient(self.settings.kafka_config())
        # Reads by assignment only (never subscribes): it joins no group and commits nothing.
        self.consumer = Consumer(
            self.settings.kafka_config(
                {
                    "group.id": "pim_hub.ops.exporter",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "latest",
                }
            )
        )

    def close(self) -> None:
        """Release the clients."""
        self.consumer.close()

    def groups(self) -> list[str]:
        """Listed and known groups matching the pattern."""
        listed: list[str] = []
        try:
            result = self.admin.list_consumer_groups(request_timeout=10).result()
            listed = [g.group_id for g in result.valid]
        except Exception as exc:  # a broker without ListGroups: fall back to the known names
            logger.warning("cannot list consumer groups", extra={"error": str(exc)})
        return wanted_groups(listed, self.known, self.group_pattern)

    def committed(self, group: str) -> dict[TP, int]:
        """The group's committed offsets (partitions without a commit are absent)."""
        futures = self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=10
        )
        out: dict[TP, int] = {}
        for fut in futures.values():
            for tp in fut.result().topic_partitions or []:
                if tp.error is None and tp.offset >= 0:
                    out[(tp.topic, tp.partition)] = tp.offset
        return out

    def read(self) -> list[PartitionLag]:
        """The lag of every watched group on every partition it committed on."""
        by_group = {g: self.committed(g) for g in self.groups()}
        positions: dict[TP, int] = {}
        for offsets in by_group.values():
            for tp, off in offsets.items():
                positions[tp] = min(off, positions.get(tp, off))
        ends = self._listed_ends(positions)
        probes = self._probe(positions, ends)
        lags = []
        # Groups at the same offset share one look-up; past the budget the age is unknown
        # (the lag in records is still exported).
        stamps: dict[tuple[str, int, int], int | None] = {}
        stamp_deadline = time.monotonic() + self.stamp_budget_s
        for group, offsets in by_group.items():
            for (topic, part), off in sorted(offsets.items()):
                probe = probes.get((topic, part), _Probe())
                # Some brokers (Tansu) list the base offset of the last batch as its end; the
                # end a fetch reports, or the last record read, corrects that.
                end = max(ends.get((topic, part), 0), probe.eof or 0, probe.last_offset + 1)
                first = probe.first_ts_ms if positions[(topic, part)] == off else None
                if first is None and end > off:
                    key = (topic, part, off)
                    if key not in stamps:
                        left = stamp_deadline - time.monotonic()
                        stamps[key] = (
                            self._timestamp_at(topic, part, off, min(self.probe_timeout_s, left))
                            if left > 0
                            else None
                        )
                    first = stamps[key]
                lags.append(PartitionLag(group, topic, part, off, end, first))
        return lags

    def _listed_ends(self, positions: dict[TP, int]) -> dict[TP, int]:
        ends: dict[TP, int] = {}
        for topic, part in positions:
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, part), timeout=5, cached=False
                )
            except Exception as exc:
                logger.warning("no end offset", extra={"topic": topic, "partition": part})
                logger.debug("end offset error", extra={"error": str(exc)})
                continue
            ends[(topic, part)] = high
        return ends

    def _probe(self, positions: dict[TP, int], ends: dict[TP, int]) -> dict[TP, _Probe]:
        """Read from each position until its end, the first record, or a bounded time."""
        probes = {tp: _Probe() for tp in positions}
        if not positions:
            return probes
        self.consumer.assign([TopicPartition(t, p, off) for (t, p), off in positions.items()])
        open_ = set(positions)
        deadline = time.monotonic() + self.probe_timeout_s
        try:
            while open_ and time.monotonic() < deadline:
                for msg in self.consumer.consume(500, 0.1):
                    tp = (msg.topic() or "", msg.partition() or 0)
                    probe = probes.get(tp)
                    if probe is None:
                        continue
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            probe.eof = msg.offset()
                            open_.discard(tp)
                        continue
                    offset = msg.offset() or 0
                    if probe.first_ts_ms is None:
                        probe.first_ts_ms = msg.timestamp()[1]
                    probe.last_offset = max(probe.last_offset, offset)
                    if ends.get(tp, 0) - positions[tp] > READ_TO_END_MAX:
                        open_.discard(tp)  # far behind: the listed end is good enough
        finally:
            self.consumer.unassign()
        return probes

    def _timestamp_at(
        self, topic: str, partition: int, offset: int, timeout_s: float
    ) -> int | None:
        self.consumer.assign([TopicPartition(topic, partition, offset)])
        try:
            for msg in self.consumer.consume(1, timeout_s):
                if msg.error() is None:
                    return int(msg.timestamp()[1])
            return None
        finally:
            self.consumer.unassign()


@dataclass
class CoverageReader:
    """Which dispatchers the registered integrations need and what waits for missing ones."""

    settings: Settings

    def read(self) -> list[Coverage]:
        """One reading (integrations from PostgreSQL, groups and offsets from the broker)."""
        from pim_hub.registry.queue_map import queue_map_from_settings
        from pim_hub.registry.store import list_integrations

        assert self.settings.database_url
        needs = needed_dispatchers(
            list_integrations(self.settings.database_url), queue_map_from_settings(self.settings)
        )
        return coverage(self.settings, needs)


def coverage_families(rows: Sequence[Coverage]) -> list[Metric]:
    """Prometheus families of a dispatcher coverage reading."""
    labels = ["group", "topic", "priority", "driver"]
    uncovered = GaugeMetricFamily(
        "pimhub_dispatcher_uncovered_messages",
        "Records on a priority topic that a needed dispatcher group never consumed "
        "(no committed offset on their partition): > 0 means jobs wait for a dispatcher "
        "that is not running",
        labels=labels,
    )
    needed = GaugeMetricFamily(
        "pimhub_dispatcher_needed",
        "1 for each dispatcher group an enabled integration needs",
        labels=labels,
    )
    for row in rows:
        if row.error is not None:
            continue
        values = [row.need.group, row.need.topic, row.need.priority, row.need.driver]
        uncovered.add_metric(values, row.uncovered)
        needed.add_metric(values, 1)
    return [uncovered, needed]


class LagCollector(Collector):
    """Serves the latest lag reading; a background thread refreshes it."""

    def __init__(
        self, reader: LagReader, interval_s: float, coverage_reader: CoverageReader | None = None
    ) -> None:
        self.reader = reader
        self.coverage_reader = coverage_reader
        self.interval_s = interval_s
        self.lags: list[PartitionLag] = []
        self.coverage: list[Coverage] = []
        self.read_at_ms = 0
        self._stop = threading.Event()
        self._warned: set[str] = set()

    def refresh_coverage(self) -> None:
        """Read the dispatcher coverage once; log each newly missing dispatcher once."""
        if self.coverage_reader is None:
            return
        try:
            self.coverage = self.coverage_reader.read()
        except Exception:
            COLLECT_ERRORS.inc()
            logger.exception("dispatcher coverage collection failed")
            return
        missing = {c.need.group: c for c in self.coverage if c.missing}
        for group, row in missing.items():
            if group not in self._warned:
                logger.warning(
                    "jobs wait on a topic no dispatcher of their driver consumes",
                    extra={
                        "group": group,
                        "topic": row.need.topic,
                        "messages": row.uncovered,
                        "command": row.need.command,
                        "integrations": ",".join(row.need.integrations),
                    },
                )
        self._warned = set(missing)

    def refresh(self) -> None:
        """Read the lag once; a failure keeps the previous reading and is counted."""
        started = time.perf_counter()
        try:
            lags = self.reader.read()
        except Exception as exc:
            HEALTH.set("lag read", False, f"{type(exc).__name__}: {exc}")
            COLLECT_ERRORS.inc()
            logger.exception("lag collection failed")
            return
        self.lags, self.read_at_ms = lags, int(time.time() * 1000)
        self.refresh_coverage()
        COLLECT_SECONDS.observe(time.perf_counter() - started)
        LAST_SUCCESS.set(time.time())
        HEALTH.set("lag read", True, f"{len(lags)} partition(s)")

    def run(self) -> None:
        """Refresh until stopped."""
        try:
            while not self._stop.is_set():
                # A reading that hangs (a broker that never answers) is a stuck exporter.
                HEALTH.beat("lag", self.interval_s + 120)
                self.refresh()
                self._stop.wait(self.interval_s)
        finally:
            HEALTH.forget("lag")  # stopped: no longer a loop of this process to watch

    def stop(self) -> None:
        """Stop refreshing."""
        self._stop.set()

    def collect(self) -> Iterator[Metric]:
        """The families of the latest reading (partitions no longer committed disappear)."""
        yield from lag_families(self.lags, self.read_at_ms)
        if self.coverage_reader is not None:
            yield from coverage_families(self.coverage)

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: the families depend on the reading."""
        return iter(())


def lag_families(lags: Sequence[PartitionLag], now_ms: int) -> list[Metric]:
    """Prometheus families of one lag reading."""
    labels = ["group", "topic", "partition", "priority", "driver"]
    messages = GaugeMetricFamily(
        "pimhub_consumer_lag_messages", "Records after the group's committed offset", labels=labels
    )
    seconds = GaugeMetricFamily(
        "pimhub_consumer_lag_seconds",
        "Age of the oldest record the group has not consumed (0 when caught up)",
        labels=labels,
    )
    committed = GaugeMetricFamily(
        "pimhub_consumer_committed_offset", "The group's committed offset", labels=labels
    )
    ends: dict[TP, int] = {}
    for lag in lags:
        g = group_labels(lag.group)
        values = [lag.group, lag.topic, str(lag.partition), g["priority"], g["driver"]]
        messages.add_metric(values, lag.messages)
        seconds.add_metric(values, lag.seconds(now_ms))
        committed.add_metric(values, lag.committed)
        ends[(lag.topic, lag.partition)] = max(lag.end, ends.get((lag.topic, lag.partition), 0))
    end = GaugeMetricFamily(
        "pimhub_topic_end_offset", "Offset after the last record", labels=["topic", "partition"]
    )
    for (topic, part), value in sorted(ends.items()):
        end.add_metric([topic, str(part)], value)
    return [messages, seconds, committed, end]


exporter_app = typer.Typer(help="Consumer lag exporter.")


@exporter_app.callback(invoke_without_command=True)
def exporter(
    interval: Annotated[float, typer.Option(help="seconds between lag readings")] = 5.0,
    groups: Annotated[
        str, typer.Option(help="regular expression of the consumer groups to watch")
    ] = DEFAULT_GROUP_PATTERN,
    port: Annotated[
        int | None, typer.Option(help="port of /metrics; default HUB_METRICS_PORT, else 9100")
    ] = None,
) -> None:
    """Serve consumer lag per group, topic and partition on /metrics (messages and seconds)."""
    from pim_hub.drivers.discovery import discover
    from pim_hub.runtime import logs

    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    if not (settings.kafka.bootstrap or settings.kafka_bootstrap):
        typer.secho("error: HUB_KAFKA_BOOTSTRAP is not set", fg="red", err=True)
        raise typer.Exit(2)
    try:
        drivers = list(discover().drivers)
    except Exception:  # a broken driver plug-in must not hide the lag of the others
        drivers = []
    reader = LagReader(settings, groups, known=known_groups(drivers))
    # Without the database the exporter cannot know which dispatchers are needed: it serves
    # the lag only.
    coverage_reader = CoverageReader(settings) if settings.database_url else None
    collector = LagCollector(reader, interval, coverage_reader)
    REGISTRY.register(collector)
    metrics_settings = metrics.MetricsSettings()
    if port is not None:
        metrics_settings = metrics_settings.model_copy(update={"metrics_port": port})
    elif metrics_settings.metrics_port is None:
        metrics_settings = metrics_settings.model_copy(update={"metrics_port": 9100})
    bound = metrics.start_from_env("exporter", metrics_settings, kafka=settings.kafka_config())
    logger.info(
        "service ready",
        extra={"service": "exporter", "port": bound, "interval_s": interval},
    )

    def on_signal(*_: Any) -> None:
        collector.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        collector.run()
    finally:
        reader.close()
