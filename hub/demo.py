"""`hub demo`: the main job on embedded defaults, stage by stage, with a summary."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer
from rich.console import Console

from drivers.discovery import discover
from hub.cli import snapshot_record
from hub.integrations import Integration, upsert_integration
from hub.kafka import consumer_config, produce_sync
from hub.sink import HttpSink
from hub.stack import Stack, Timeout, local_stack
from sandbox.akeneo import Catalogue
from schemas import topics

console = Console()


def _publish(
    stack: Stack, producer: Any, product: dict[str, Any] | None, key: str, version: str
) -> None:
    record = snapshot_record("product", key, product, version, "sync")
    produce_sync(producer, topics.SNAPSHOTS, stack.serde.encode("Snapshot", record), key=key)


def _mutations(
    consumer: Consumer, stack: Stack, key: str, seen: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    for msg in consumer.consume(100, 0.2):
        if msg.error() is None and msg.key() == key.encode():
            seen.append(stack.serde.decode("Mutation", msg.value()))
    return seen


def _describe(change: dict[str, Any]) -> str:
    where = "/".join(x for x in (change["attribute"], change["locale"], change["scope"]) if x)
    label = f"{change['field']} {where}".strip()
    if change["added"] is not None or change["removed"] is not None:
        return f"{label}: +{change['added'] or []} -{change['removed'] or []}"
    new = change["new"] or "null"
    return f"{label}: {change['old'] or 'null'} -> {new if len(new) < 60 else new[:57] + '...'}"


def run_demo(show_logs: bool = True) -> int:
    """Run the demo; 0 when every stage was observed, 1 otherwise."""
    started = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="pimhub-demo-"))
    sink = HttpSink().start()
    db_name = f"pimhub_demo_{os.getpid()}"
    console.rule("[bold]pim-hub demo")
    try:
        with local_stack(
            db_name, log_dir=log_dir, extra_env={"HUB_INTEGRATIONS_REFRESH_S": "1"}
        ) as stack:
            console.print(f"broker    {stack.rt.broker.bootstrap} ({stack.rt.broker.kind})")
            console.print(f"database  {stack.rt.database.kind} PostgreSQL, database {db_name}")
            console.print(f"logs      {log_dir}" if show_logs else "")
            upsert_integration(
                stack.database_url,
                discover(),
                Integration(
                    "demo-webhook",
                    "Demo webhook",
                    "webhook",
                    True,
                    {"url": f"{sink.url}/pim"},
                    None,
                    {},
                ),
            )
            console.print(f"integration demo-webhook → POST {sink.url}/pim")
            stack.start_mutator()
            stack.start_projector()
            for priority in ("immediate", "normal", "low"):
                stack.start_dispatcher("webhook", priority)
            console.print(
                "services  mutator, projector, dispatcher webhook for immediate/normal/low"
            )

            catalogue = Catalogue(products=10, seed=7)
            product = catalogue.product_at(0)
            assert product is not None
            key = f"product:{product['uuid']}"
            sku = product["values"]["sku"][0]["data"]
            producer = stack.producer()
            consumer = Consumer(consumer_config(stack.settings, f"hub.demo.{uuid.uuid4().hex[:8]}"))
            consumer.subscribe([topics.MUTATIONS])
            mutations: list[dict[str, Any]] = []

            def step(
                title: str, payload: dict[str, Any] | None, version: str, expect_jobs: int
            ) -> None:
                t0 = time.monotonic()
                _publish(stack, producer, payload, key, version)
                console.print(
                    f"\n[bold]{title}[/bold]: snapshot of {sku} published to {topics.SNAPSHOTS}"
                )

                def delivered() -> list[dict[str, Any]]:
                    rows = stack.query(
                        "SELECT * FROM deliveries WHERE entity_key = %s AND status = 'delivered'",
                        key,
                    )
                    return rows if len(rows) >= expect_jobs else []

                rows = stack.wait_for(delivered, timeout=120, what=f"{expect_jobs} delivered jobs")
                stack.wait_for(
                    lambda: len(_mutations(consumer, stack, key, mutations)) >= expect_jobs,
                    timeout=60,
                    what="the mutation on hub.mutations",
                )
                m = mutations[-1]
                console.print(
                    f"  mutation  {m['operation']} with {len(m['changes'])} change(s) on {topics.MUTATIONS}"
                )
                for c in m["changes"][:4]:
                    console.print(f"            {_describe(c)}")
                if len(m["changes"]) > 4:
                    console.print(f"            … and {len(m['changes']) - 4} more")
                last = max(rows, key=lambda r: r["occurred_at"])
                console.print(
                    f"  job       {last['priority']} → {last['status']} to {last['integration_id']} "
                    f"in {(time.monotonic() - t0) * 1000:.0f} ms end to end"
                )

            step("1. create", product, product["updated"], 1)
            edited = orjson.loads(orjson.dumps(product))
            name_values = [
                v for v in edited["values"].get("name", []) if v["locale"] == "en_US"
            ] or [{"locale": "en_US", "scope": None, "data": ""}]
            name_values[0]["data"] = (name_values[0]["data"] or "Product") + " (new season)"
            edited["values"]["name"] = name_values + [
                v for v in edited["values"].get("name", []) if v["locale"] != "en_US"
            ]
            step("2. update one attribute", edited, "2030-01-01T00:00:00+00:00", 2)

            console.print("\n[bold]3. identical snapshot again[/bold]: the mutator finds no change")
            before = len(mutations)
            _publish(stack, producer, edited, key, "2030-01-01T00:00:01+00:00")
            step("4. delete", None, "2030-01-01T00:00:02+00:00", 3)
            no_op_ok = len(mutations) == before + 1  # only the delete was added

            received = sink.bodies(key)
            console.rule("[bold]summary")
            console.print("snapshots published   4")
            console.print(
                f"mutations emitted     {len(mutations)} ({', '.join(m['operation'] for m in mutations)})"
            )
            console.print(f"no-op suppressed      {'yes' if no_op_ok else 'NO'}")
            console.print(f"webhooks received     {len(received)}")
            console.print(
                f"delivered (Postgres)  {len(stack.query('SELECT 1 FROM deliveries WHERE status = %s', 'delivered'))}"
            )
            console.print(f"total time            {time.monotonic() - started:.1f} s")
            ok = (
                no_op_ok
                and len(received) == 3
                and [m["operation"] for m in mutations] == ["create", "update", "delete"]
            )
            consumer.close()
            console.print("[green]demo passed[/green]" if ok else "[red]demo failed[/red]")
            return 0 if ok else 1
    except Timeout as exc:
        console.print(f"[red]demo failed:[/red] {exc}\nservice logs are in {log_dir}")
        return 1
    finally:
        sink.stop()
