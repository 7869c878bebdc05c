"""One output option for every listing command: `--output table|json|jsonl`.

`table` is for people (columns, may change between versions); `json` is one JSON document
(a list of objects) and `jsonl` one object per line: both have stable keys, for scripts.
Reports go to stdout, logs and warnings to stderr, so a pipe gets only the data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Any

import typer

from pim_hub.schemas.limits import escape_controls


class Output(StrEnum):
    """The formats of a listing."""

    table = "table"
    json = "json"
    jsonl = "jsonl"


OutputOpt = Annotated[
    Output,
    typer.Option(
        "--output",
        "-o",
        help="table (for people), json (one document) or jsonl (one object per line)",
        case_sensitive=False,
    ),
]


def _default(value: Any) -> Any:
    # datetimes, UUIDs, decimals: their text
    return str(value)


def emit(
    rows: Iterable[Mapping[str, Any]],
    output: Output,
    table: Callable[[Mapping[str, Any]], str],
) -> int:
    """Write rows in the chosen format; returns how many were written."""
    count = 0
    if output is Output.json:
        items = [dict(r) for r in rows]
        typer.echo(json.dumps(items, indent=2, sort_keys=True, default=_default))
        return len(items)
    for row in rows:
        if output is Output.jsonl:
            typer.echo(json.dumps(dict(row), sort_keys=True, default=_default))
        else:
            # Rows quote keys and errors from outside: control characters shown escaped.
            typer.echo(escape_controls(table(row)))
        count += 1
    return count
