"""Commands imported only when they run: `hub --help` and every command start quickly.

Each command of `hub` lives in a module that imports what it needs (Kafka, PostgreSQL,
pydantic settings, Faust...). Importing them all to print `--help` took more than a second,
so the root group knows each command by name, section and one help line, and imports its
module when it is invoked (or its own `--help` is asked for). The `--help` listing is built
from that table alone, and printed as plain text: rich's help formatting (typer.rich_utils,
rich, markdown-it) was more than half of what `hub --help` cost. A command's own `--help`
keeps typer's rich formatting.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

# typer 0.29 carries its own click (typer._click); its commands are of those classes.
from typer._click.core import Command, Context
from typer._click.formatting import HelpFormatter
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

#: The heading of commands that name no section.
OTHER_SECTION = "Commands"


@dataclass(frozen=True)
class Lazy:
    """One command of the root group, known before its module is imported."""

    name: str
    #: "module:attribute": a typer.Typer (a group) or a function (a command)
    target: str
    section: str
    help: str
    hidden: bool = False


def _click_command(name: str, obj: Any) -> Command:
    """The click command of a Typer app or of a command function, under name."""
    command: Command
    if isinstance(obj, typer.Typer):
        # A group even with one sub-command (`hub db migrate`), as when it was added with
        # add_typer.
        command = typer.main.get_group(obj)
    else:
        holder = typer.Typer(add_completion=False)
        holder.command(name)(obj)
        command = typer.main.get_command(holder)  # one command: the command itself
    command.name = name
    return command


def load(entry: Lazy) -> Command:
    """Import a lazy command's module and build its click command."""
    module, _, attribute = entry.target.partition(":")
    obj = getattr(importlib.import_module(module), attribute)
    command = _click_command(entry.name, obj)
    command.rich_help_panel = entry.section  # type: ignore[attr-defined]
    return command


def plugin_command(ep: EntryPoint, section: str, explain: Callable[[str], Command]) -> Command:
    """The command an entry point of `pim_hub.commands` registers, or one that explains what
    to install when its package or extra is missing."""
    try:
        register = ep.load()
    except ImportError as exc:
        return explain(str(exc))
    holder = typer.Typer(add_completion=False)

    @holder.callback()
    def _group() -> None:
        """Holds the plugin's command."""

    register(holder)
    group = typer.main.get_command(holder)
    assert isinstance(group, TyperGroup)
    command = group.get_command(Context(group), ep.name)
    if command is None:
        return explain(f"{ep.value} registers no command named {ep.name!r}")
    command.rich_help_panel = section  # type: ignore[attr-defined]
    return command


class LazyGroup(TyperGroup):
    """The root group: its eager commands plus `lazy` ones and `plugins` loaded on use."""

    lazy: dict[str, Lazy] = {}
    #: name -> (the entry point, its section, its help line)
    plugins: dict[str, tuple[EntryPoint, str, str]] = {}
    #: builds the stand-in of a plugin that cannot be loaded (set by the CLI)
    explain: Callable[[EntryPoint, str], Command] | None = None
    _listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        """Every command name: the table's, the plugins', then the eager ones."""
        eager = list(super().list_commands(ctx))
        names = [n for n in self.lazy if n not in eager]
        names += [n for n in self.plugins if n not in eager and n not in names]
        return names + eager

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The command to run; while `--help` lists the commands, a stub with its help line."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name in self.lazy:
            entry = self.lazy[cmd_name]
            if self._listing:
                return TyperCommand(
                    cmd_name, help=entry.help, rich_help_panel=entry.section, hidden=entry.hidden
                )
            return load(entry)
        if cmd_name in self.plugins:
            ep, section, line = self.plugins[cmd_name]
            if self._listing:
                return TyperCommand(cmd_name, help=line, rich_help_panel=section)
            explain = type(self).explain
            assert explain is not None
            return plugin_command(ep, section, lambda why: explain(ep, why))
        return None

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The help page as plain text, listing lazy commands without importing them."""
        self._listing = True
        try:
            # click's own layout (usage, text, options, commands), not typer's rich one.
            Command.format_help(self, ctx, formatter)
        finally:
            self._listing = False

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The commands under their sections' headings, in the order of first appearance."""
        sections: dict[str, list[tuple[str, str]]] = {}
        names = self.list_commands(ctx)
        width = max(map(len, names), default=0)  # one column for every section
        for name in names:
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            section = getattr(command, "rich_help_panel", None) or OTHER_SECTION
            # The whole help line (wrapped), not click's first 45 characters.
            line = command.get_short_help_str(1000)
            sections.setdefault(section, []).append((name.ljust(width), line))
        for section, rows in sections.items():
            with formatter.section(section):
                formatter.write_dl(rows)
