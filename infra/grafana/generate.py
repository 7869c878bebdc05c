"""Generates the Grafana dashboards (dashboards as code): `python infra/grafana/generate.py`."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
RATE = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Panel:
    """One time-series panel: a title, PromQL expressions with legends, and a unit."""

    title: str
    exprs: list[tuple[str, str]]
    unit: str = "short"
    description: str = ""
    #: Batch jobs (the REST sync) are scraped only while they run: their panels may be empty.
    batch: bool = False


@dataclass(frozen=True)
class Dashboard:
    """A dashboard of panels in rows of two."""

    uid: str
    title: str
    panels: list[Panel]
    variables: list[dict[str, Any]] = field(default_factory=list)


def quantiles(metric: str, by: str, selector: str = "") -> list[tuple[str, str]]:
    """p50/p95/p99 of a histogram, one series per `by` label value."""
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{selector}[{RATE}])))",
            f"p{int(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


OVERVIEW = Dashboard(
    "pimhub-overview",
    "pim-hub / Overview",
    [
        Panel(
            "Webhook events in",
            [
                (
                    f"sum by (outcome) (rate(pimhub_ingest_webhook_events_total[{RATE}]))",
                    "{{outcome}}",
                )
            ],
            "ops",
        ),
        Panel(
            "Snapshots in (mutator)",
            [(f"sum by (outcome) (rate(pimhub_mutator_snapshots_total[{RATE}]))", "{{outcome}}")],
            "ops",
        ),
        Panel(
            "Mutations out",
            [
                (
                    f"sum by (operation) (rate(pimhub_mutator_mutations_total[{RATE}]))",
                    "{{operation}}",
                )
            ],
            "ops",
        ),
        Panel(
            "Jobs fanned out by priority",
            [(f"sum by (priority) (rate(pimhub_fanout_jobs_total[{RATE}]))", "{{priority}}")],
            "ops",
        ),
        Panel(
            "Jobs finished by outcome",
            [(f"sum by (outcome) (rate(pimhub_dispatcher_jobs_total[{RATE}]))", "{{outcome}}")],
            "ops",
        ),
        Panel(
            "End-to-end latency by priority (source received → delivered)",
            quantiles("pimhub_end_to_end_seconds", "priority"),
            "s",
        ),
        Panel(
            "Consumer lag by group (seconds)",
            [("max by (group) (pimhub_consumer_lag_seconds)", "{{group}}")],
            "s",
        ),
        Panel(
            "Consumer lag by group (records)",
            [("sum by (group) (pimhub_consumer_lag_messages)", "{{group}}")],
        ),
        Panel(
            "Failure rate (retries and dead letters per second)",
            [
                (
                    "sum by (outcome) "
                    f'(rate(pimhub_dispatcher_jobs_total{{outcome=~"retrying|dead"}}[{RATE}]))',
                    "{{outcome}}",
                )
            ],
            "ops",
        ),
        Panel(
            "Dead letters by integration",
            [
                (
                    "sum by (integration, error_kind) "
                    f"(increase(pimhub_dispatcher_dead_letters_total[{RATE}]))",
                    "{{integration}} {{error_kind}}",
                )
            ],
        ),
        Panel(
            "Services up",
            [('sum by (service) (up{job="pim-hub"})', "{{service}}")],
        ),
        Panel(
            "Jobs in flight",
            [
                (
                    "sum by (driver, priority) (pimhub_dispatcher_in_flight)",
                    "{{driver}} {{priority}}",
                )
            ],
        ),
        Panel(
            "Partitions held per dispatcher process",
            [
                (
                    "sum by (driver, priority, instance) (pimhub_dispatcher_partitions)",
                    "{{driver}} {{priority}} {{instance}}",
                )
            ],
        ),
    ],
)

_I = 'integration="$integration"'
INTEGRATION = Dashboard(
    "pimhub-integration",
    "pim-hub / Integration",
    [
        Panel(
            "Jobs fanned out by priority",
            [
                (
                    f"sum by (priority) (rate(pimhub_fanout_jobs_total{{{_I}}}[{RATE}]))",
                    "{{priority}}",
                )
            ],
            "ops",
        ),
        Panel(
            "Jobs finished by outcome",
            [
                (
                    f"sum by (outcome) (rate(pimhub_dispatcher_jobs_total{{{_I}}}[{RATE}]))",
                    "{{outcome}}",
                )
            ],
            "ops",
        ),
        Panel(
            "Delivery duration per job",
            quantiles("pimhub_dispatcher_delivery_seconds", "priority", f"{{{_I}}}"),
            "s",
        ),
        Panel(
            "End-to-end latency by priority",
            quantiles("pimhub_end_to_end_seconds", "priority", f"{{{_I}}}"),
            "s",
        ),
        Panel(
            "Target calls by status",
            [
                (
                    f"sum by (status) (rate(pimhub_target_calls_total{{{_I}}}[{RATE}]))",
                    "{{status}}",
                )
            ],
            "ops",
        ),
        Panel(
            "Retries by priority",
            [
                (
                    f"sum by (priority) (rate(pimhub_dispatcher_retries_total{{{_I}}}[{RATE}]))",
                    "{{priority}}",
                )
            ],
            "ops",
        ),
        Panel(
            "Dead letters by error kind",
            [
                (
                    "sum by (error_kind) "
                    f"(increase(pimhub_dispatcher_dead_letters_total{{{_I}}}[{RATE}]))",
                    "{{error_kind}}",
                )
            ],
        ),
        Panel(
            "Rate-limit waits",
            [
                (
                    f"sum(rate(pimhub_dispatcher_rate_limit_wait_seconds_sum{{{_I}}}[{RATE}]))",
                    "seconds waited per second",
                ),
                (
                    f"sum(rate(pimhub_dispatcher_rate_limit_wait_seconds_count{{{_I}}}[{RATE}]))",
                    "waits per second",
                ),
            ],
        ),
    ],
    variables=[
        {
            "name": "integration",
            "label": "Integration",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {
                "query": "label_values(pimhub_fanout_jobs_total, integration)",
                "refId": "integrations",
            },
            "definition": "label_values(pimhub_fanout_jobs_total, integration)",
            "refresh": 2,
            "sort": 1,
            "includeAll": False,
            "multi": False,
        }
    ],
)

INGEST = Dashboard(
    "pimhub-ingest",
    "pim-hub / Ingest",
    [
        Panel(
            "Webhook requests by outcome",
            [
                (
                    "sum by (endpoint, outcome) "
                    f"(rate(pimhub_ingest_webhook_requests_total[{RATE}]))",
                    "{{endpoint}} {{outcome}}",
                )
            ],
            "reqps",
        ),
        Panel(
            "Webhook answer time",
            quantiles("pimhub_ingest_webhook_seconds", "endpoint"),
            "s",
        ),
        Panel(
            "Events by type",
            [
                (
                    f"sum by (event_type) (rate(pimhub_ingest_events_total[{RATE}]))",
                    "{{event_type}}",
                )
            ],
            "ops",
        ),
        Panel(
            "Published, duplicate and ignored events",
            [
                (
                    f"sum by (outcome) (rate(pimhub_ingest_webhook_events_total[{RATE}]))",
                    "{{outcome}}",
                )
            ],
            "ops",
        ),
        Panel(
            "Signature failures",
            [
                (
                    f"sum by (endpoint) (increase(pimhub_ingest_signature_failures_total[{RATE}]))",
                    "{{endpoint}}",
                )
            ],
        ),
        Panel(
            "Webhook failure ratio",
            [
                (
                    "sum by (endpoint) "
                    f'(rate(pimhub_ingest_webhook_requests_total{{outcome!="accepted"}}[{RATE}]))'
                    " / sum by (endpoint) "
                    f"(rate(pimhub_ingest_webhook_requests_total[{RATE}]))",
                    "{{endpoint}}",
                )
            ],
            "percentunit",
        ),
        Panel(
            "Sync: entities read per second",
            [
                (
                    f"sum by (entity_type) (rate(pimhub_sync_items_total[{RATE}]))",
                    "{{entity_type}}",
                )
            ],
            "ops",
            batch=True,
        ),
        Panel(
            "Sync: entities read (progress)",
            [("sum by (entity_type) (pimhub_sync_items_total)", "{{entity_type}}")],
            batch=True,
        ),
        Panel(
            "Akeneo calls by status",
            [(f"sum by (status) (rate(pimhub_akeneo_calls_total[{RATE}]))", "{{status}}")],
            "reqps",
            batch=True,
        ),
        Panel(
            "Akeneo 429 answers",
            [(f"sum(increase(pimhub_akeneo_rate_limited_total[{RATE}]))", "429")],
            batch=True,
        ),
    ],
)

CONSUMER_GROUPS = Dashboard(
    "pimhub-consumer-groups",
    "pim-hub / Consumer groups",
    [
        Panel(
            "Lag in records by group and topic",
            [("sum by (group, topic) (pimhub_consumer_lag_messages)", "{{group}} {{topic}}")],
        ),
        Panel(
            "Lag in seconds by group and topic (age of the oldest unread record)",
            [("max by (group, topic) (pimhub_consumer_lag_seconds)", "{{group}} {{topic}}")],
            "s",
        ),
        Panel(
            "Consumed records per second by group",
            [
                (
                    f"sum by (group) (rate(pimhub_consumer_committed_offset[{RATE}]))",
                    "{{group}}",
                )
            ],
            "ops",
        ),
        Panel(
            "Produced records per second by topic",
            [(f"sum by (topic) (rate(pimhub_topic_end_offset[{RATE}]))", "{{topic}}")],
            "ops",
        ),
        Panel(
            "Lag by partition (records)",
            [
                (
                    "max by (group, topic, partition) (pimhub_consumer_lag_messages)",
                    "{{group}} {{topic}}[{{partition}}]",
                )
            ],
        ),
        Panel(
            "Exporter: seconds since the last lag reading",
            [("time() - pimhub_exporter_last_success_timestamp_seconds", "age")],
            "s",
        ),
    ],
)

DASHBOARDS = [OVERVIEW, INTEGRATION, INGEST, CONSUMER_GROUPS]


def render(d: Dashboard) -> dict[str, Any]:
    """The Grafana JSON model of a dashboard."""
    panels = []
    for i, p in enumerate(d.panels):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": p.title,
                "description": p.description,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                        "refId": chr(ord("A") + j),
                    }
                    for j, (expr, legend) in enumerate(p.exprs)
                ],
            }
        )
    datasource_var = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
    }
    return {
        "uid": d.uid,
        "title": d.title,
        "tags": ["pim-hub"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [datasource_var, *d.variables]},
        "annotations": {"list": []},
        "panels": panels,
    }


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
