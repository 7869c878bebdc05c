"""The product as installed: its version, its data files, its plugin commands, its defaults."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points, version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pim_hub.cli import main as cli_main
from pim_hub.runtime import db
from pim_hub.services.mutator.app import ensure_data_dir
from pim_hub.services.mutator.settings import MutatorSettings

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_version_comes_from_the_package_metadata() -> None:
    result = runner.invoke(cli_main.app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"pim-hub {version('pim-hub')}"
    assert runner.invoke(cli_main.app, ["version"]).output == result.output


def test_the_migrations_are_package_data_and_all_of_them_are_read() -> None:
    with db.migrations_dir() as path:
        assert path.is_relative_to(Path(cli_main.__file__).resolve().parents[1])
        shipped = sorted(p.stem for p in path.glob("*.sql"))
    assert shipped == db.migration_ids()
    assert shipped[0] == "0001_initial" and len(shipped) >= 9


def test_a_command_whose_extra_is_missing_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = EntryPoint(
        name="up", value="pim_hub_missing_module:register [local]", group=cli_main.COMMANDS_GROUP
    )
    monkeypatch.setattr(cli_main, "entry_points", lambda group: [broken])
    app = typer.Typer()

    @app.command()
    def other() -> None:
        """Another command, so that `up` is a subcommand."""

    cli_main.mount_plugins(app)
    result = runner.invoke(app, ["up", "--some-option"])
    assert result.exit_code == 2
    assert "pip install 'pim-hub[local]'" in result.output
    assert "Traceback" not in result.output


def test_the_local_stack_registers_its_commands_through_entry_points() -> None:
    names = {ep.name: ep for ep in entry_points(group=cli_main.COMMANDS_GROUP)}
    assert {"up", "demo", "sandbox", "console"} <= set(names)
    assert all(names[n].extras == ["local"] for n in ("up", "demo", "sandbox"))
    assert names["console"].extras == ["console"]
    help_text = runner.invoke(cli_main.app, ["--help"]).output
    for command in ("up", "demo", "sandbox", "console", "mutator", "dispatcher", "replay"):
        assert command in help_text


def test_the_default_mutator_data_dir_is_created_with_its_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HUB_MUTATOR_DATA_DIR", raising=False)
    mutator = MutatorSettings()
    assert mutator.data_dir == ".hub/mutator"  # the default, never set by the tests
    path = ensure_data_dir(mutator)
    assert (tmp_path / ".hub" / "mutator").is_dir() and path == Path(".hub/mutator")
    assert ensure_data_dir(mutator) == path  # again: no error


def test_nothing_in_the_repository_reads_beside_it() -> None:
    # A user's clone has nothing next to it: no path may climb out of the repository.
    offenders: list[Any] = []
    for path in [*ROOT.glob("src/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]:
        text = path.read_text()
        for needle in ('"shared" / "specs"', "../shared", '.parent / "shared"'):
            if needle in text and path.name != "test_packaging.py":
                offenders.append((path.relative_to(ROOT), needle))
    assert offenders == []


def test_the_benchmarks_do_not_import_the_tests() -> None:
    # Shared synthetic records live in pim_hub.devstack.fixtures, for both.
    for path in ROOT.glob("bench/*.py"):
        text = path.read_text()
        assert "from tests" not in text and "import tests" not in text, path.name


def test_hub_up_prints_its_database_in_the_form_it_was_given() -> None:
    from pim_hub.devstack.embedded import replace_dbname

    assert (
        replace_dbname("postgresql://u:p%40ss@127.0.0.1:5432/postgres?sslmode=disable", "pim_hub")
        == "postgresql://u:p%40ss@127.0.0.1:5432/pim_hub?sslmode=disable"
    )
    conninfo = replace_dbname("host=/run/pg dbname=postgres user=u", "pim hub")
    assert "dbname='pim hub'" in conninfo and "host=/run/pg" in conninfo
