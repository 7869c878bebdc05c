"""`hub entities …` (the local entity model) and `hub diff` (what the hub would send)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from pim_hub.runtime.entry import fail as _fail
from pim_hub.runtime.entry import load_settings as _settings
from pim_hub.runtime.entry import need_db as _need_db
from pim_hub.services.projections.cli import entities as entities_projector

entities_app = typer.Typer(
    no_args_is_help=True, help="The local model: latest state of every entity (PostgreSQL)."
)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, default=_json_default, option=orjson.OPT_INDENT_2).decode())


entities_app.command("project")(entities_projector)


@entities_app.command("show")
def show(
    key: Annotated[str, typer.Argument(help="entity key (product:<uuid>), SKU or code")],
) -> None:
    """Print one entity of the local model with its values, as JSON."""
    import psycopg

    from pim_hub.services.projections.entities import fetch_entity

    settings = _settings()
    with psycopg.connect(_need_db(settings)) as conn:
        entity = fetch_entity(conn, key)
    if entity is None:
        raise _fail(f"no entity {key!r} in the local model", code=1)
    _print_json(entity)


def _load(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise _fail(f"{path}: {exc}") from exc


def diff(
    old: Annotated[Path, typer.Argument(help="previous Akeneo JSON (`null`: none, a create)")],
    new: Annotated[Path, typer.Argument(help="current Akeneo JSON (`null`: a deletion)")],
    entity_type: Annotated[str, typer.Option(help="product, category, family, ...")] = "product",
    no_state: Annotated[bool, typer.Option("--no-state", help="leave out the full state")] = False,
) -> None:
    """Print the mutation the hub would emit for OLD → NEW, as JSON (`null` when none).

    Versions are the payloads' `updated`: when NEW is older than OLD the hub ignores it.
    """
    from pim_hub.schemas.entities import entity_key
    from pim_hub.schemas.errors import PermanentError
    from pim_hub.services.mutator.core import diffing

    before, after = _load(old), _load(new)
    if before is None and after is None:
        raise _fail("OLD and NEW are both null")
    try:
        keys = {entity_key(entity_type, p) for p in (before, after) if p is not None}
        if len(keys) != 1:
            raise _fail(f"OLD and NEW are different entities: {', '.join(sorted(keys))}")
        key = keys.pop()
        stored = diffing.index_state(entity_type, before) if before is not None else None
        version = after.get("updated") if after is not None else None
        decision = diffing.decide(
            entity_type, key, stored, after, version if isinstance(version, str) else None
        )
    except PermanentError as exc:
        raise _fail(str(exc)) from exc
    if decision.kind != "mutation":
        reasons = {
            "stale": "NEW is older than OLD (its `updated`): the hub ignores it",
            "duplicate": "same content and version: the hub emits nothing",
            "noop": "same content: the hub emits nothing",
        }
        typer.secho(f"no mutation: {reasons[decision.kind]}", err=True)
        typer.echo("null")
        return
    mutation: dict[str, Any] = {
        "mutation_id": decision.mutation_id,
        "entity_type": entity_type,
        "entity_key": key,
        "operation": decision.operation,
        "version": version,
        # As on hub.mutations: old/new are JSON text, added/removed list codes.
        "changes": [diffing.change_to_record(c) for c in decision.changes],
    }
    if not no_state:
        mutation["state"] = decision.state_payload
    _print_json(mutation)
