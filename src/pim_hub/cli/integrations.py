"""`hub integrations …` and `hub drivers …`: the integration registry and driver discovery."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml

from pim_hub.cli.output import Output, OutputOpt, emit
from pim_hub.runtime import logs
from pim_hub.runtime.entry import configure_sealing
from pim_hub.runtime.settings import Settings

registry_app = typer.Typer(
    no_args_is_help=True,
    help="Integrations (targets) of the hub. Changes are validated against the driver's config "
    "model, published to hub.integrations, and followed by the fan-out within seconds.",
)
drivers_app = typer.Typer(no_args_is_help=True, help="Installed drivers.")


def _settings() -> Settings:
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    configure_sealing(settings)
    return settings


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _registry(publish: bool = True) -> Any:
    from pim_hub.drivers.discovery import discover
    from pim_hub.registry.changes import KafkaChangePublisher
    from pim_hub.registry.queue_map import QueueMapError, queue_map_from_settings
    from pim_hub.registry.service import Registry

    settings = _settings()
    if not settings.database_url:
        _fail("HUB_DATABASE_URL is not set (`hub up` prints one)")
    try:
        queue_map = queue_map_from_settings(settings)
    except QueueMapError as exc:
        _fail(str(exc))
    publisher = None
    if publish:
        if settings.kafka.bootstrap or settings.kafka_bootstrap:
            publisher = KafkaChangePublisher(settings)
        else:
            typer.secho(
                "warning: HUB_KAFKA_BOOTSTRAP is not set: changes are saved but not published "
                "to hub.integrations (run `hub integrations publish` later)",
                fg="yellow",
                err=True,
            )
    return Registry(settings.database_url, discover(), publisher, queue_map.levels)


def _queue_map() -> Any:
    from pim_hub.registry.queue_map import QueueMapError, queue_map_from_settings

    try:
        return queue_map_from_settings(_settings())
    except QueueMapError as exc:
        _fail(str(exc))


def _run(action: Any) -> Any:
    """Run a registry call; registry and broker errors become a clean exit 2."""
    from pim_hub.registry.model import IntegrationError
    from pim_hub.runtime.kafka import DeliveryFailed
    from pim_hub.runtime.sealing import SealingError

    try:
        return action()
    except (IntegrationError, SealingError) as exc:
        _fail(str(exc))
    except DeliveryFailed as exc:  # the broker did not take it: a runtime failure
        _fail(f"{exc} (nothing was changed)", 1)


def _json_arg(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        raw = Path(value[1:]).read_text() if value.startswith("@") else value
    except OSError as exc:
        _fail(f"{what}: cannot read {value[1:]}: {exc}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        _fail(f"{what} is not JSON: {exc}")


def _object_arg(value: str | None, what: str) -> dict[str, Any] | None:
    parsed = _json_arg(value, what)
    if parsed is not None and not isinstance(parsed, dict):
        _fail(f"{what} must be a JSON object")
    return parsed


def _types_arg(value: str | None) -> list[str] | None:
    if value is None or value.strip() in ("", "*"):
        return None
    return sorted({t.strip() for t in value.split(",") if t.strip()})


def _report(changes: list[Any]) -> None:
    for change in changes:
        typer.echo(change.line())


def _shown(registry: Any, integ: Any) -> dict[str, Any]:
    event: dict[str, Any] = registry.event(integ)
    event.pop("schema", None)
    return event


ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", help="JSON object, or @file.json (validated by the driver)"),
]
TypesOpt = Annotated[
    str | None,
    typer.Option(
        "--entity-types", help="comma-separated filter; '*' or empty: all the driver handles"
    ),
]
PmapOpt = Annotated[
    str | None,
    typer.Option(
        "--priority-map",
        help='JSON overrides, e.g. {"attributes": {"description": "immediate"}}',
    ),
]


@registry_app.command("add")
def add(
    integration_id: Annotated[str, typer.Argument(help="stable id, e.g. magento-eu")],
    driver: Annotated[str, typer.Option(help="driver key (see `hub drivers list`)")],
    config: ConfigOpt = "{}",
    name: Annotated[str | None, typer.Option()] = None,
    entity_types: TypesOpt = None,
    priority_map: PmapOpt = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="create it disabled")] = False,
) -> None:
    """Create an integration (refused when the id exists: use update or apply)."""
    from pim_hub.registry.model import Integration

    integ = Integration(
        id=integration_id,
        name=name or integration_id,
        driver=driver,
        enabled=not disabled,
        config=_object_arg(config, "--config") or {},
        entity_types=_types_arg(entity_types),
        priority_map=_object_arg(priority_map, "--priority-map") or {},
    )
    registry = _registry()
    _report([_run(lambda: registry.add(integ))])


@registry_app.command("list")
def list_(
    output: OutputOpt = Output.table,
    as_json: Annotated[
        bool, typer.Option("--json", hidden=True, help="the same as --output jsonl")
    ] = False,
) -> None:
    """List integrations with the priorities their jobs can go to (configs only in json/jsonl,
    secrets masked)."""
    from pim_hub.ops.dispatchers import integration_priorities

    registry = _registry(publish=False)
    queue_map = _queue_map()
    rows = []
    for integ in registry.all():
        row = _shown(registry, integ)
        row["priorities"] = integration_priorities(integ, queue_map)
        row["driver_installed"] = integ.driver in registry.catalogue.drivers
        rows.append(row)

    def line(r: Any) -> str:
        types = ",".join(r["entity_types"]) if r.get("entity_types") else "*"
        state = "enabled " if r["enabled"] else "disabled"
        installed = "" if r["driver_installed"] else "  (driver not installed)"
        return (
            f"{r['id']:24} {r['driver']:12} {state} types={types} "
            f"priorities={','.join(r['priorities'])}{installed}"
        )

    emit(rows, Output.jsonl if as_json else output, line)


@registry_app.command("show")
def show(integration_id: str) -> None:
    """One integration as JSON (secrets masked), with the priorities its live jobs can go to
    and the dispatchers it needs (low too, for replays and resyncs); with HUB_KAFKA_BOOTSTRAP set, whether each is running; and
    its circuits: each dispatcher process's circuit breaker (closed, open, half_open; since
    when; last and next probe) and concurrency limit (lowered while the target throttles)."""
    from pim_hub.ops.circuits import circuits
    from pim_hub.ops.dispatchers import coverage, integration_priorities, needed_dispatchers

    registry = _registry(publish=False)
    integ = _run(lambda: registry.get(integration_id))
    queue_map = _queue_map()
    shown = _shown(registry, integ)
    shown["priorities"] = integration_priorities(integ, queue_map)
    needs = needed_dispatchers([integ], queue_map, include_disabled=True)
    settings = _settings()
    if settings.kafka.bootstrap or settings.kafka_bootstrap:
        rows = [c.as_dict() for c in coverage(settings, needs)]
    else:
        rows = [{"group": n.group, "command": n.command, "state": "unknown"} for n in needs]
    for row in rows:
        row.pop("integrations", None)
    shown["dispatchers"] = rows
    try:
        shown["circuits"] = circuits(settings.require_database(), integration_id)
    except Exception as exc:  # an older schema (no migration 0020) or the database away
        shown["circuits"] = []
        typer.secho(f"warning: circuits unknown: {exc}", fg="yellow", err=True)
    typer.echo(json.dumps(shown, indent=2, sort_keys=True))
    for c in shown["circuits"]:
        if c["state"] != "closed" and not c["stale"]:
            typer.secho(
                f"warning: the circuit of {integration_id} ({c['priority']}) is {c['state']} "
                f"since {c['opened_at']} in {c['process']}: its target fails for everything; "
                "its jobs wait (docs/runbooks.md#pimhubcircuitopen)",
                fg="yellow",
                err=True,
            )
    for row in rows:
        if row["state"] == "missing":
            typer.secho(
                f"warning: {row['uncovered_messages']} jobs wait on {row['topic']} and no "
                f"dispatcher consumes them: run `{row['command']}`",
                fg="yellow",
                err=True,
            )


@registry_app.command("dispatchers")
def dispatchers(
    output: OutputOpt = Output.table,
    check: Annotated[
        bool, typer.Option("--check", help="exit 1 when a needed dispatcher is missing")
    ] = False,
) -> None:
    """The dispatchers the enabled integrations need (one per driver and priority their jobs
    can reach, and low for replays and resyncs) and, with HUB_KAFKA_BOOTSTRAP set, whether
    each consumes its topic.

    States: running (caught up), behind (lagging), not started (never consumed, nothing
    waits), missing (never consumed while jobs wait on its topic), unknown (no broker).
    """
    from pim_hub.ops.dispatchers import coverage, needed_dispatchers

    registry = _registry(publish=False)
    needs = needed_dispatchers(registry.all(), _queue_map())
    settings = _settings()
    if settings.kafka.bootstrap or settings.kafka_bootstrap:
        rows = [c.as_dict() for c in coverage(settings, needs)]
    else:
        rows = [
            {
                "driver": n.driver,
                "priority": n.priority,
                "topic": n.topic,
                "group": n.group,
                "command": n.command,
                "integrations": list(n.integrations),
                "state": "unknown",
            }
            for n in needs
        ]

    def line(r: Any) -> str:
        waiting = f"  {r['uncovered_messages']} jobs waiting" if r["state"] == "missing" else ""
        return f"{r['state']:12} {r['command']:56} for {', '.join(r['integrations'])}{waiting}"

    emit(rows, output, line)
    missing = [r for r in rows if r["state"] == "missing"]
    for r in missing:
        typer.secho(
            f"warning: no dispatcher consumes {r['topic']} for driver {r['driver']}: "
            f"run `{r['command']}`",
            fg="yellow",
            err=True,
        )
    if check and missing:
        raise typer.Exit(1)


@registry_app.command("update")
def update(
    integration_id: str,
    config: ConfigOpt = None,
    replace_config: Annotated[
        bool, typer.Option("--replace-config", help="replace the config instead of merging keys")
    ] = False,
    name: Annotated[str | None, typer.Option()] = None,
    driver: Annotated[str | None, typer.Option()] = None,
    entity_types: TypesOpt = None,
    priority_map: PmapOpt = None,
) -> None:
    """Change an integration; --config keys are merged into the stored config (null removes one)."""
    from pim_hub.registry.service import UNSET

    registry = _registry()
    change = _run(
        lambda: registry.update(
            integration_id,
            name=name,
            driver=driver,
            config=_object_arg(config, "--config"),
            replace_config=replace_config,
            entity_types=UNSET if entity_types is None else _types_arg(entity_types),
            priority_map=_object_arg(priority_map, "--priority-map"),
        )
    )
    _report([change])


@registry_app.command("enable")
def enable(integration_id: str) -> None:
    """Enable an integration (fan-out follows within HUB_INTEGRATIONS_REFRESH_S)."""
    registry = _registry()
    _report([_run(lambda: registry.set_enabled(integration_id, True))])


@registry_app.command("disable")
def disable(integration_id: str) -> None:
    """Disable an integration (fan-out follows within HUB_INTEGRATIONS_REFRESH_S)."""
    registry = _registry()
    _report([_run(lambda: registry.set_enabled(integration_id, False))])


@registry_app.command("remove")
def remove(integration_id: str) -> None:
    """Delete an integration (a tombstone goes to hub.integrations)."""
    registry = _registry()
    _report([_run(lambda: registry.remove(integration_id))])


@registry_app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="YAML with an `integrations:` list")],
    prune: Annotated[
        bool, typer.Option("--prune", help="remove integrations the file does not name")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report only")] = False,
) -> None:
    """Create or update integrations from a declarative file, idempotently; reports what changed.

    Strings may refer to environment variables as ${NAME} or ${NAME:-default}, so secrets stay
    out of the file. One invalid integration refuses the whole file.
    """
    from pim_hub.registry.files import parse_integrations_file

    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        _fail(f"cannot read {file}: {exc}")
    registry = _registry(publish=not dry_run)
    specs = _run(lambda: parse_integrations_file(data, os.environ))
    changes = _run(lambda: registry.apply(specs, prune=prune, dry_run=dry_run))
    _report(changes)
    counts = {
        a: sum(1 for c in changes if c.action == a) for a in ("created", "updated", "removed")
    }
    summary = ", ".join(f"{n} {a}" for a, n in counts.items())
    typer.echo(
        f"{summary}, {len(changes) - sum(counts.values())} unchanged"
        + (" (dry run)" if dry_run else "")
    )


@registry_app.command("publish")
def publish() -> None:
    """Publish every integration to hub.integrations again (repairs the topic)."""
    registry = _registry()
    if registry.publisher is None:
        _fail("HUB_KAFKA_BOOTSTRAP is not set")
    count = _run(registry.publish_all)
    typer.echo(f"published {count} integrations")


@registry_app.command("new-key")
def new_key() -> None:
    """Print a new key for HUB_SECRETS_KEY (integration secrets encrypted at rest)."""
    from pim_hub.runtime.sealing import new_key as make_key

    typer.echo(make_key())


@registry_app.command("reseal")
def reseal() -> None:
    """Store every integration's secrets sealed with the first key of HUB_SECRETS_KEY.

    After setting a key for the first time, or after putting a new key first (keep the old
    one after it until this has run).
    """
    from pim_hub.runtime import sealing

    registry = _registry(publish=False)
    if not sealing.enabled():
        _fail("HUB_SECRETS_KEY is not set (make one with `hub integrations new-key`)")
    count = _run(registry.reseal)
    typer.echo(f"resealed {count} integrations")


@registry_app.command("priorities")
def priorities() -> None:
    """Show the queue map in use (HUB_QUEUE_MAP_FILE, or the defaults)."""
    from pim_hub.registry.queue_map import QueueMapError, queue_map_from_settings

    try:
        qmap = queue_map_from_settings(_settings())
    except QueueMapError as exc:
        _fail(str(exc))
    typer.echo(yaml.safe_dump(qmap.describe(), sort_keys=False).rstrip())


def _field_summary(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = []
    for name, prop in schema.get("properties", {}).items():
        kind = (
            prop.get("type")
            or prop.get("format")
            or "/".join(str(p.get("type", p.get("format", "?"))) for p in prop.get("anyOf", []))
        )
        if prop.get("format") == "password" or any(
            p.get("format") == "password" for p in prop.get("anyOf", [])
        ):
            kind += ", secret"
        flag = "required" if name in required else f"default {json.dumps(prop.get('default'))}"
        doc = f"  {prop['description']}" if prop.get("description") else ""
        lines.append(f"{name} ({kind}; {flag}){doc}")
    return lines


@drivers_app.command("list")
def drivers_list(
    schema: Annotated[bool, typer.Option("--schema", help="print each config JSON Schema")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="one document {drivers, broken}", hidden=True)
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Installed drivers: key, version, entity types, config schema; broken packages by name.

    Exits with 1 when a driver package failed to load (the others are still listed).
    """
    from pim_hub.drivers.discovery import describe, discover

    cat = discover()
    described = [describe(cls) for _, cls in sorted(cat.drivers.items())]
    if as_json:
        doc = {"drivers": described, "broken": dict(sorted(cat.broken.items()))}
        typer.echo(json.dumps(doc, indent=2))
    elif output is not Output.table:
        # One row per driver; a package that failed to load is a row with its error.
        rows = [{**d, "error": None} for d in described]
        rows += [{"key": name, "error": error} for name, error in sorted(cat.broken.items())]
        emit(rows, output, str)
    else:
        for d in described:
            typer.echo(f"{d['key']:12} {d['version']:8} {d['description']}")
            typer.echo(f"{'':12} entity types: {', '.join(d['entity_types'])}")
            if schema:
                typer.echo(json.dumps(d["config_schema"], indent=2))
            else:
                for line in _field_summary(d["config_schema"]):
                    typer.echo(f"{'':12} config: {line}")
        for name, error in sorted(cat.broken.items()):
            typer.secho(f"{name:12} BROKEN   {error}", fg="red")
    if cat.broken:
        raise typer.Exit(1)
