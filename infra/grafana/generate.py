"""Generates the Grafana dashboards with Grafana's own SDK: `python infra/grafana/generate.py`.

The PromQL stays data (the `Panel`s below, in rows per stage); `grafana-foundation-sdk` (the
`dev` extra: the product never imports it) turns it into typed dashboard models, so a field
Grafana does not know fails here, not in Grafana. `--check` reports stale committed files.

Every query is filtered by the dashboard variables `namespace`, `job` and `instance` (so it
works whatever the scrape job is called: Prometheus, Compose, a PodMonitor) and, where the
metric has one, `integration` (multi-select, with "All").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
RATE = "$__rate_interval"
DATASOURCE = dash_m.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: Where the alerts' runbooks live (the same base as `runbook_url` in the alert rules).
RUNBOOKS = "https://github.com/pim-hub/pim-hub/blob/main/docs/runbooks.md"

#: Every query's scrape filter: the dashboard's namespace, job and instance variables.
S = 'namespace=~"$namespace", job=~"$job", instance=~"$instance"'
#: The same plus the integration variable (for metrics labelled by integration).
SI = f'{S}, integration=~"$integration"'

Kind = Literal["timeseries", "stat", "table"]


@dataclass(frozen=True)
class Panel:
    """One panel: a title, PromQL expressions with legends, a unit and how to show it."""

    title: str
    exprs: list[tuple[str, str]]
    unit: str = "short"
    description: str = ""
    kind: Kind = "timeseries"
    #: Width in grid columns (24 per row).
    width: int = 12
    #: Batch jobs (the REST sync) are scraped only while they run: their panels may be empty.
    batch: bool = False
    #: The alert whose runbook the panel links (docs/runbooks.md).
    runbook: str | None = None
    #: Stat thresholds: (value, colour) from the lowest; the first value is ignored (base).
    thresholds: Sequence[tuple[float | None, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    """A row of panels: one stage of the pipeline."""

    title: str
    panels: list[Panel]


@dataclass(frozen=True)
class Dashboard:
    """A dashboard of rows."""

    uid: str
    title: str
    description: str
    rows: list[Row]
    integration_variable: bool = False

    def panels(self) -> list[Panel]:
        """Every panel, row by row."""
        return [p for r in self.rows for p in r.panels]


def quantiles(metric: str, by: str, selector: str) -> list[tuple[str, str]]:
    """p50/p95/p99 of a histogram, one series per `by` label value."""
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{int(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


GOOD_HIGH: Sequence[tuple[float | None, str]] = [(None, "red"), (0.95, "orange"), (0.99, "green")]
GOOD_LOW_SECONDS: Sequence[tuple[float | None, str]] = [
    (None, "green"),
    (60, "orange"),
    (600, "red"),
]
NONE_IS_GOOD: Sequence[tuple[float | None, str]] = [(None, "green"), (1, "red")]

# ---- the service-level picture: "is it healthy now" -----------------------------------------

NOW = Row(
    "Now",
    [
        Panel(
            "Delivery success (1h)",
            [
                (
                    f'sum(increase(pimhub_dispatcher_jobs_total{{{SI}, outcome="delivered"}}[1h]))'
                    " / sum(increase(pimhub_dispatcher_jobs_total"
                    f'{{{SI}, outcome=~"delivered|dead"}}[1h]))',
                    "delivered / finished",
                )
            ],
            "percentunit",
            "Jobs delivered out of those that finished (delivered or dead) in the last hour.",
            kind="stat",
            width=6,
            runbook="PimHubDeadLetters",
            thresholds=GOOD_HIGH,
        ),
        Panel(
            "Dead letters (1h)",
            [
                (
                    f"sum(increase(pimhub_dispatcher_dead_letters_total{{{SI}}}[1h])) or vector(0)",
                    "dead letters",
                )
            ],
            description="Jobs that reached hub.jobs.dead in the last hour (`hub dead list`).",
            kind="stat",
            width=6,
            runbook="PimHubDeadLetters",
            thresholds=NONE_IS_GOOD,
        ),
        Panel(
            "Services up",
            [(f"sum(up{{{S}}})", "up"), (f"count(up{{{S}}}) - sum(up{{{S}}})", "down")],
            description="Scrape targets answering / not answering (`hub health` says why).",
            kind="stat",
            width=6,
            runbook="PimHubServiceDown",
        ),
        Panel(
            "Lag exporter: last reading",
            [(f"time() - max(pimhub_exporter_last_success_timestamp_seconds{{{S}}})", "age")],
            "s",
            "Seconds since `hub exporter` last read the lag; the lag panels are stale beyond 2 min.",
            kind="stat",
            width=6,
            runbook="PimHubLagExporterStale",
            thresholds=[(None, "green"), (60, "orange"), (120, "red")],
        ),
        Panel(
            "Oldest unprocessed record per stage (consumer group)",
            [(f"max by (group) (pimhub_consumer_lag_seconds{{{S}}})", "{{group}}")],
            "s",
            "Age of the oldest record each group has not consumed yet (0: caught up).",
            kind="stat",
            width=24,
            runbook="PimHubLagImmediate",
            thresholds=GOOD_LOW_SECONDS,
        ),
    ],
)

FAILURES = Row(
    "Failures",
    [
        Panel(
            "Worst integrations (1h)",
            [
                (
                    "topk(10, sum by (integration) (increase(pimhub_dispatcher_jobs_total"
                    f'{{{SI}, outcome=~"retrying|dead"}}[1h]))'
                    " / sum by (integration) (increase(pimhub_dispatcher_jobs_total"
                    f"{{{SI}}}[1h])))",
                    "{{integration}}",
                )
            ],
            "percentunit",
            "Share of each integration's finished jobs that were retried or died.",
            kind="table",
            runbook="PimHubDeadLetters",
        ),
        Panel(
            "Top failure reasons (1h)",
            [
                (
                    "topk(10, sum by (integration, error_kind) "
                    f"(increase(pimhub_dispatcher_dead_letters_total{{{SI}}}[1h])))",
                    "{{integration}} {{error_kind}}",
                ),
                (
                    "topk(10, sum by (integration, status) "
                    f'(increase(pimhub_target_calls_total{{{SI}, status!~"2.."}}[1h])))',
                    "{{integration}} {{status}}",
                ),
            ],
            description="Dead letters by error kind, and target answers other than 2xx.",
            kind="table",
            runbook="PimHubDeadLetters",
        ),
    ],
)

OVERVIEW = Dashboard(
    "pimhub-overview",
    "pim-hub / Overview",
    "Is the hub healthy now, and where it is not: stages from ingest to delivery.",
    [
        NOW,
        FAILURES,
        Row(
            "Ingest",
            [
                Panel(
                    "Webhook events in",
                    [
                        (
                            "sum by (outcome) "
                            f"(rate(pimhub_ingest_webhook_events_total{{{S}}}[{RATE}]))",
                            "{{outcome}}",
                        )
                    ],
                    "ops",
                    runbook="PimHubWebhookFailureRatio",
                ),
                Panel(
                    "Snapshots in (mutator)",
                    [
                        (
                            f"sum by (outcome) (rate(pimhub_mutator_snapshots_total{{{S}}}[{RATE}]))",
                            "{{outcome}}",
                        )
                    ],
                    "ops",
                ),
            ],
        ),
        Row(
            "Mutator and fan-out",
            [
                Panel(
                    "Mutations out",
                    [
                        (
                            "sum by (operation) "
                            f"(rate(pimhub_mutator_mutations_total{{{S}}}[{RATE}]))",
                            "{{operation}}",
                        )
                    ],
                    "ops",
                ),
                Panel(
                    "Jobs fanned out by priority",
                    [
                        (
                            f"sum by (priority) (rate(pimhub_fanout_jobs_total{{{SI}}}[{RATE}]))",
                            "{{priority}}",
                        )
                    ],
                    "ops",
                ),
            ],
        ),
        Row(
            "Dispatch",
            [
                Panel(
                    "Jobs finished by outcome",
                    [
                        (
                            "sum by (outcome) "
                            f"(rate(pimhub_dispatcher_jobs_total{{{SI}}}[{RATE}]))",
                            "{{outcome}}",
                        )
                    ],
                    "ops",
                ),
                Panel(
                    "End-to-end latency by priority (source received → delivered)",
                    quantiles("pimhub_end_to_end_seconds", "priority", SI),
                    "s",
                ),
                Panel(
                    "Failure rate (retries and dead letters per second)",
                    [
                        (
                            "sum by (outcome) (rate(pimhub_dispatcher_jobs_total"
                            f'{{{SI}, outcome=~"retrying|dead"}}[{RATE}]))',
                            "{{outcome}}",
                        )
                    ],
                    "ops",
                    runbook="PimHubDeadLetters",
                ),
                Panel(
                    "Circuit state by integration (0 closed, 1 probing, 2 open)",
                    [
                        (
                            "max by (integration, priority) "
                            f"(pimhub_dispatcher_circuit_state{{{SI}}})",
                            "{{integration}} {{priority}}",
                        )
                    ],
                    description="The circuit breaker of each integration's target: open while "
                    "it fails for everything (its jobs wait, one probe at a time). "
                    "`hub integrations show` tells since when and the last and next probe.",
                    runbook="PimHubCircuitOpen",
                ),
                Panel(
                    "Outage so far (share of the outage ceiling)",
                    [
                        (
                            "max by (integration, priority) ("
                            f"(time() - pimhub_dispatcher_circuit_opened_timestamp_seconds{{{SI}}})"
                            f" * (pimhub_dispatcher_circuit_opened_timestamp_seconds{{{SI}}} > bool 0)"
                            f" / (pimhub_dispatcher_outage_ceiling_seconds{{{SI}}} > 0))",
                            "{{integration}} {{priority}}",
                        )
                    ],
                    "percentunit",
                    description="How long each circuit has been open, against "
                    "HUB_DISPATCHER_OUTAGE_CEILING_S (0 while closed). At 100 % its held jobs "
                    "go through the retry tiers to the dead letters.",
                    runbook="PimHubOutageCeilingNear",
                ),
                Panel(
                    "Concurrency limit by integration (lowered while the target throttles)",
                    [
                        (
                            "min by (integration, priority) "
                            f"(pimhub_dispatcher_concurrency_limit{{{SI}}})",
                            "{{integration}} {{priority}}",
                        )
                    ],
                    description="Driver calls each integration may have in flight: its "
                    "configured concurrency, halved on a 429 or slow answers, raised again one "
                    "by one (AIMD).",
                ),
                Panel(
                    "Jobs in flight",
                    [
                        (
                            f"sum by (driver, priority) (pimhub_dispatcher_in_flight{{{S}}})",
                            "{{driver}} {{priority}}",
                        )
                    ],
                ),
                Panel(
                    "Partitions held per dispatcher process",
                    [
                        (
                            "sum by (driver, priority, instance) "
                            f"(pimhub_dispatcher_partitions{{{S}}})",
                            "{{driver}} {{priority}} {{instance}}",
                        )
                    ],
                ),
                Panel(
                    "Services up",
                    [(f"sum by (job, service) (up{{{S}}})", "{{job}} {{service}}")],
                    runbook="PimHubServiceDown",
                ),
                Panel(
                    "Event-loop lag p99 by service",
                    [
                        (
                            "histogram_quantile(0.99, sum by (le, job) "
                            f"(rate(pimhub_event_loop_lag_seconds_bucket{{{S}}}[{RATE}])))",
                            "{{job}}",
                        )
                    ],
                    "s",
                    description="How late each service's asyncio loop ran work that was due: "
                    "every record, request and acknowledgement in that process waits this "
                    "long too. High on all services at once: the host is short of CPU.",
                ),
            ],
        ),
        Row(
            "Consumer groups",
            [
                Panel(
                    "Consumer lag by group (seconds)",
                    [(f"max by (group) (pimhub_consumer_lag_seconds{{{S}}})", "{{group}}")],
                    "s",
                    runbook="PimHubLagImmediate",
                ),
                Panel(
                    "Consumer lag by group (records)",
                    [(f"sum by (group) (pimhub_consumer_lag_messages{{{S}}})", "{{group}}")],
                    runbook="PimHubConsumerGroupStalled",
                ),
            ],
        ),
    ],
    integration_variable=True,
)

INTEGRATION = Dashboard(
    "pimhub-integration",
    "pim-hub / Integration",
    "One or more integrations: jobs, deliveries, target answers, retries and dead letters.",
    [
        Row(
            "Now",
            [
                Panel(
                    "Delivery success (1h)",
                    NOW.panels[0].exprs,
                    "percentunit",
                    kind="stat",
                    width=8,
                    runbook="PimHubDeadLetters",
                    thresholds=GOOD_HIGH,
                ),
                Panel(
                    "Dead letters (1h)",
                    NOW.panels[1].exprs,
                    kind="stat",
                    width=8,
                    runbook="PimHubDeadLetters",
                    thresholds=NONE_IS_GOOD,
                ),
                Panel(
                    "Delivery p95 (5m)",
                    [
                        (
                            "histogram_quantile(0.95, sum by (le) (rate("
                            f"pimhub_dispatcher_delivery_seconds_bucket{{{SI}}}[5m])))",
                            "p95",
                        )
                    ],
                    "s",
                    kind="stat",
                    width=8,
                ),
            ],
        ),
        Row(
            "Jobs",
            [
                Panel(
                    "Jobs fanned out by priority",
                    [
                        (
                            "sum by (integration, priority) "
                            f"(rate(pimhub_fanout_jobs_total{{{SI}}}[{RATE}]))",
                            "{{integration}} {{priority}}",
                        )
                    ],
                    "ops",
                ),
                Panel(
                    "Jobs finished by outcome",
                    [
                        (
                            "sum by (integration, outcome) "
                            f"(rate(pimhub_dispatcher_jobs_total{{{SI}}}[{RATE}]))",
                            "{{integration}} {{outcome}}",
                        )
                    ],
                    "ops",
                ),
            ],
        ),
        Row(
            "Delivery",
            [
                Panel(
                    "Delivery duration per job",
                    quantiles("pimhub_dispatcher_delivery_seconds", "priority", SI),
                    "s",
                ),
                Panel(
                    "End-to-end latency by priority",
                    quantiles("pimhub_end_to_end_seconds", "priority", SI),
                    "s",
                ),
                Panel(
                    "Target calls by status",
                    [
                        (
                            "sum by (integration, status) "
                            f"(rate(pimhub_target_calls_total{{{SI}}}[{RATE}]))",
                            "{{integration}} {{status}}",
                        )
                    ],
                    "ops",
                ),
                Panel(
                    "Rate-limit waits",
                    [
                        (
                            "sum(rate(pimhub_dispatcher_rate_limit_wait_seconds_sum"
                            f"{{{SI}}}[{RATE}]))",
                            "seconds waited per second",
                        ),
                        (
                            "sum(rate(pimhub_dispatcher_rate_limit_wait_seconds_count"
                            f"{{{SI}}}[{RATE}]))",
                            "waits per second",
                        ),
                    ],
                ),
            ],
        ),
        Row(
            "Failures",
            [
                Panel(
                    "Retries by priority",
                    [
                        (
                            "sum by (integration, priority) "
                            f"(rate(pimhub_dispatcher_retries_total{{{SI}}}[{RATE}]))",
                            "{{integration}} {{priority}}",
                        )
                    ],
                    "ops",
                ),
                Panel(
                    "Dead letters by error kind",
                    [
                        (
                            "sum by (integration, error_kind) "
                            f"(increase(pimhub_dispatcher_dead_letters_total{{{SI}}}[{RATE}]))",
                            "{{integration}} {{error_kind}}",
                        )
                    ],
                    runbook="PimHubDeadLetters",
                ),
                FAILURES.panels[1],
            ],
        ),
    ],
    integration_variable=True,
)

INGEST = Dashboard(
    "pimhub-ingest",
    "pim-hub / Ingest",
    "Akeneo webhooks, the enricher and the REST sync.",
    [
        Row(
            "Now",
            [
                Panel(
                    "Webhook failure ratio (5m)",
                    [
                        (
                            "sum(rate(pimhub_ingest_webhook_requests_total"
                            f'{{{S}, outcome!="accepted"}}[5m]))'
                            f" / sum(rate(pimhub_ingest_webhook_requests_total{{{S}}}[5m]))",
                            "failing",
                        )
                    ],
                    "percentunit",
                    kind="stat",
                    width=12,
                    runbook="PimHubWebhookFailureRatio",
                    thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
                ),
                Panel(
                    "Signature failures (1h)",
                    [
                        (
                            "sum(increase(pimhub_ingest_signature_failures_total"
                            f"{{{S}}}[1h])) or vector(0)",
                            "refused",
                        )
                    ],
                    kind="stat",
                    width=12,
                    runbook="PimHubWebhookFailureRatio",
                    thresholds=NONE_IS_GOOD,
                ),
            ],
        ),
        Row(
            "Webhooks",
            [
                Panel(
                    "Webhook requests by outcome",
                    [
                        (
                            "sum by (endpoint, outcome) "
                            f"(rate(pimhub_ingest_webhook_requests_total{{{S}}}[{RATE}]))",
                            "{{endpoint}} {{outcome}}",
                        )
                    ],
                    "reqps",
                ),
                Panel(
                    "Webhook answer time",
                    quantiles("pimhub_ingest_webhook_seconds", "endpoint", S),
                    "s",
                ),
                Panel(
                    "Webhook wait before its handler",
                    quantiles("pimhub_ingest_webhook_wait_seconds", "endpoint", S),
                    "s",
                    description="From reading a request's head to its handler starting: the "
                    "receiver's event loop was busy or its process waited for a core. Not "
                    "part of the answer time beside it.",
                ),
                Panel(
                    "Events by type",
                    [
                        (
                            "sum by (event_type) "
                            f"(rate(pimhub_ingest_events_total{{{S}}}[{RATE}]))",
                            "{{event_type}}",
                        )
                    ],
                    "ops",
                ),
                Panel(
                    "Published, duplicate and ignored events",
                    [
                        (
                            "sum by (outcome) "
                            f"(rate(pimhub_ingest_webhook_events_total{{{S}}}[{RATE}]))",
                            "{{outcome}}",
                        )
                    ],
                    "ops",
                ),
                Panel(
                    "Signature failures",
                    [
                        (
                            "sum by (endpoint) "
                            f"(increase(pimhub_ingest_signature_failures_total{{{S}}}[{RATE}]))",
                            "{{endpoint}}",
                        )
                    ],
                    runbook="PimHubWebhookFailureRatio",
                ),
                Panel(
                    "Webhook failure ratio",
                    [
                        (
                            "sum by (endpoint) (rate(pimhub_ingest_webhook_requests_total"
                            f'{{{S}, outcome!="accepted"}}[{RATE}]))'
                            " / sum by (endpoint) "
                            f"(rate(pimhub_ingest_webhook_requests_total{{{S}}}[{RATE}]))",
                            "{{endpoint}}",
                        )
                    ],
                    "percentunit",
                    runbook="PimHubWebhookFailureRatio",
                ),
            ],
        ),
        Row(
            "REST sync (batch: scraped while it runs)",
            [
                Panel(
                    "Sync: entities read per second",
                    [
                        (
                            f"sum by (entity_type) (rate(pimhub_sync_items_total{{{S}}}[{RATE}]))",
                            "{{entity_type}}",
                        )
                    ],
                    "ops",
                    batch=True,
                ),
                Panel(
                    "Sync: entities read (progress)",
                    [(f"sum by (entity_type) (pimhub_sync_items_total{{{S}}})", "{{entity_type}}")],
                    batch=True,
                ),
                Panel(
                    "Akeneo calls by status",
                    [
                        (
                            f"sum by (status) (rate(pimhub_akeneo_calls_total{{{S}}}[{RATE}]))",
                            "{{status}}",
                        )
                    ],
                    "reqps",
                    batch=True,
                ),
                Panel(
                    "Akeneo 429 answers",
                    [(f"sum(increase(pimhub_akeneo_rate_limited_total{{{S}}}[{RATE}]))", "429")],
                    batch=True,
                ),
            ],
        ),
    ],
)

CONSUMER_GROUPS = Dashboard(
    "pimhub-consumer-groups",
    "pim-hub / Consumer groups",
    "Lag of every consumer group (from `hub exporter`): records, seconds and progress.",
    [
        Row(
            "Now",
            [
                Panel(
                    "Groups behind by more than a minute",
                    [
                        (
                            f"count(max by (group) (pimhub_consumer_lag_seconds{{{S}}}) > 60)"
                            " or vector(0)",
                            "groups",
                        )
                    ],
                    kind="stat",
                    width=12,
                    runbook="PimHubLagNormal",
                    thresholds=NONE_IS_GOOD,
                ),
                Panel(
                    "Records not consumed yet",
                    [(f"sum(pimhub_consumer_lag_messages{{{S}}})", "records")],
                    kind="stat",
                    width=12,
                    runbook="PimHubConsumerGroupStalled",
                ),
            ],
        ),
        Row(
            "Lag",
            [
                Panel(
                    "Lag in records by group and topic",
                    [
                        (
                            f"sum by (group, topic) (pimhub_consumer_lag_messages{{{S}}})",
                            "{{group}} {{topic}}",
                        )
                    ],
                    runbook="PimHubConsumerGroupStalled",
                ),
                Panel(
                    "Lag in seconds by group and topic (age of the oldest unread record)",
                    [
                        (
                            f"max by (group, topic) (pimhub_consumer_lag_seconds{{{S}}})",
                            "{{group}} {{topic}}",
                        )
                    ],
                    "s",
                    runbook="PimHubLagImmediate",
                ),
                Panel(
                    "Lag by partition (records)",
                    [
                        (
                            "max by (group, topic, partition) "
                            f"(pimhub_consumer_lag_messages{{{S}}})",
                            "{{group}} {{topic}}[{{partition}}]",
                        )
                    ],
                ),
            ],
        ),
        Row(
            "Progress",
            [
                Panel(
                    "Consumed records per second by group",
                    [
                        (
                            "sum by (group) "
                            f"(rate(pimhub_consumer_committed_offset{{{S}}}[{RATE}]))",
                            "{{group}}",
                        )
                    ],
                    "ops",
                    runbook="PimHubConsumerGroupStalled",
                ),
                Panel(
                    "Produced records per second by topic",
                    [
                        (
                            f"sum by (topic) (rate(pimhub_topic_end_offset{{{S}}}[{RATE}]))",
                            "{{topic}}",
                        )
                    ],
                    "ops",
                ),
                Panel(
                    "Exporter: seconds since the last lag reading",
                    [
                        (
                            f"time() - pimhub_exporter_last_success_timestamp_seconds{{{S}}}",
                            "age",
                        )
                    ],
                    "s",
                    runbook="PimHubLagExporterStale",
                ),
            ],
        ),
    ],
)

DASHBOARDS = [OVERVIEW, INTEGRATION, INGEST, CONSUMER_GROUPS]


# ---- rendering with the SDK -----------------------------------------------------------------


def _query(expr: str, legend: str, ref: str, kind: Kind) -> prom_b.Dataquery:
    q = prom_b.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    if kind == "table":
        # One row per series at the dashboard's end time.
        return q.instant().format(prom_m.PromQueryFormat.TABLE)
    return q.range()


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps([dash_m.Threshold(value=v, color=c) for v, c in steps])
    )


def _panel(p: Panel) -> Any:
    builder: Any
    if p.kind == "stat":
        builder = (
            stat_b.Panel()
            .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
            .graph_mode(common_m.BigValueGraphMode.AREA)
            .color_mode(common_m.BigValueColorMode.BACKGROUND)
            .height(5)
        )
        if p.thresholds:
            builder = builder.thresholds(_thresholds(p.thresholds))
    elif p.kind == "table":
        builder = (
            table_b.Panel()
            .height(8)
            # Instant vectors as one table: a row per label set, the value as a column.
            .with_transformation(
                dash_m.DataTransformerConfig(id_val="merge", options={}),
            )
            .sort_by([common_b.TableSortByFieldState().display_name("Value").desc(True)])
        )
    else:
        builder = (
            ts_b.Panel()
            .height(8)
            .legend(
                common_b.VizLegendOptions()
                .display_mode(common_m.LegendDisplayMode.LIST)
                .placement(common_m.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
        )
    builder = (
        builder.title(p.title)
        .description(p.description)
        .datasource(DATASOURCE)
        .unit(p.unit)
        .span(p.width)
        .targets(
            [
                _query(expr, legend, chr(ord("A") + i), p.kind)
                for i, (expr, legend) in enumerate(p.exprs)
            ]
        )
    )
    if p.runbook:
        builder = builder.links(
            [
                dash_b.DashboardLink(f"Runbook: {p.runbook}")
                .type(dash_m.DashboardLinkType.LINK)
                .url(f"{RUNBOOKS}#{p.runbook.lower()}")
                .target_blank(True)
            ]
        )
    return builder


def _label_variable(name: str, label: str, query: str, all_value: str | None) -> Any:
    var = (
        dash_b.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": query, "refId": name})
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(dash_m.VariableOption(selected=True, text="All", value="$__all"))
    )
    if all_value is not None:
        var = var.all_value(all_value)
    return var


def variables(d: Dashboard) -> list[Any]:
    """The dashboard's variables: data source, namespace, job, instance (and integration)."""
    out: list[Any] = [
        dash_b.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        # Series without a namespace (Compose, a single host) match ".*" too.
        _label_variable(
            "namespace", "Namespace", "label_values(pimhub_service_info, namespace)", ".*"
        ),
        # "All" is every job that serves hub metrics, whatever the scrape job is called.
        _label_variable(
            "job",
            "Job",
            'label_values(pimhub_service_info{namespace=~"$namespace"}, job)',
            None,
        ),
        _label_variable(
            "instance",
            "Instance",
            'label_values(pimhub_service_info{namespace=~"$namespace", job=~"$job"}, instance)',
            None,
        ),
    ]
    if d.integration_variable:
        out.append(
            _label_variable(
                "integration",
                "Integration",
                'label_values(pimhub_fanout_jobs_total{namespace=~"$namespace"}, integration)',
                ".*",
            )
        )
    return out


def build(d: Dashboard) -> Any:
    """The SDK's dashboard model of a dashboard."""
    board = (
        dash_b.Dashboard(d.title)
        .uid(d.uid)
        .description(d.description)
        .tags(["pim-hub"])
        .timezone("utc")
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .variables(variables(d))
        .links(
            [
                dash_b.DashboardLink("pim-hub")
                .type(dash_m.DashboardLinkType.DASHBOARDS)
                .tags(["pim-hub"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True),
                dash_b.DashboardLink("Runbooks")
                .type(dash_m.DashboardLinkType.LINK)
                .url(RUNBOOKS)
                .target_blank(True),
            ]
        )
    )
    for row in d.rows:
        board = board.with_row(dash_b.Row(row.title))
        for panel in row.panels:
            board = board.with_panel(_panel(panel))
    return board.build()


def render(d: Dashboard) -> dict[str, Any]:
    """The Grafana JSON model of a dashboard."""
    data: dict[str, Any] = json.loads(json.dumps(build(d), cls=JSONEncoder))
    # Panel ids in order (Grafana wants them unique; the SDK leaves them unset).
    for i, panel in enumerate(data["panels"]):
        panel["id"] = i + 1
    return data


def files() -> dict[Path, str]:
    """Generated file path → content."""
    return {
        OUT / f"{d.uid.removeprefix('pimhub-')}.json": json.dumps(render(d), indent=2) + "\n"
        for d in DASHBOARDS
    }


def main(argv: list[str]) -> int:
    """Write the dashboards, or with --check report whether the committed ones are current."""
    stale = []
    for path, text in files().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run python infra/grafana/generate.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
