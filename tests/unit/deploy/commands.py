"""Resolves `hub ...` argument lists against the typer app's registered commands."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import typer
import typer.main
from typer._click.core import Context
from typer.core import TyperGroup
from typer.exceptions import TyperException

from pim_hub.cli.main import app

#: Every long-running or one-shot command the deployment files start.
EXPECTED_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("ingest", "web"),
    ("ingest", "enrich"),
    ("sync", "akeneo"),
    ("mutator",),
    ("projector",),
    ("entities", "project"),
    ("exporter",),
    ("dispatcher",),
    ("topics", "apply"),
    ("db", "migrate"),
    ("console",),
)


def resolve(args: list[str]) -> tuple[str, ...]:
    """The command path of `hub <args>`; raises ValueError naming what is not a real command.

    The leaf command also parses its options, so a misspelt or missing option fails too.
    """
    # Typer ships its own click: walk groups through list_commands/get_command (the root
    # group imports its commands on use).
    group: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = list(args)
    while isinstance(group, TyperGroup):
        if (
            path
            and getattr(group, "invoke_without_command", False)
            and (not rest or rest[0].startswith("-"))
        ):
            break  # a group that runs itself (`hub console --host ...`): its options follow
        if not rest:
            raise ValueError(f"`hub {' '.join(path)}` needs a sub-command")
        name = rest.pop(0)
        ctx = Context(group)
        sub = group.get_command(ctx, name)
        if sub is None:
            known = ", ".join(sorted(group.list_commands(ctx)))
            raise ValueError(f"`hub {' '.join([*path, name])}` is not a command (known: {known})")
        path.append(name)
        group = sub
    try:
        group.make_context(" ".join(["hub", *path]), rest, resilient_parsing=False)
    except typer.Exit:
        pass
    except TyperException as exc:
        raise ValueError(f"`hub {' '.join(args)}`: {exc}") from exc
    return tuple(path)


def hub_invocations_in_shell(script: str) -> list[list[str]]:
    """The `hub ...` commands inside a shell snippet (up to ; & | or `do`)."""
    found = re.findall(r"(?:^|[\s;&|(])hub\s+([^;&|)]+)", script)
    return [shlex.split(f) for f in found]


def load_generator() -> ModuleType:
    """infra/k8s/generate.py as a module (infra/ is not a package)."""
    path = Path(__file__).resolve().parents[3] / "infra" / "k8s" / "generate.py"
    spec = importlib.util.spec_from_file_location("hub_k8s_generate", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module
