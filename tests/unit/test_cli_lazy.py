"""`hub --help` lists every command without importing the services behind them."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from pim_hub.cli.main import COMMANDS, app

CHECK = """
import sys
from typer.testing import CliRunner
from pim_hub.cli.main import app
result = CliRunner().invoke(app, ["--help"])
assert result.exit_code == 0, result.output
heavy = ["faust", "confluent_kafka", "psycopg", "pydantic_settings", "pim_hub.services",
         "pim_hub.ops", "pim_hub.devstack", "pim_hub.sandbox", "pim_hub.runtime.settings",
         # The listing is plain text: rich's help formatting was half of the start-up.
         "typer.rich_utils", "rich", "markdown_it"]
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print(",".join(loaded))
"""


def test_help_imports_no_service_broker_or_database_library() -> None:
    # A fresh interpreter: this test process has imported everything already.
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "", f"imported by `hub --help`: {done.stdout.strip()}"


def test_help_lists_every_command_in_its_section() -> None:
    text = CliRunner().invoke(app, ["--help"]).output
    for entry in COMMANDS:
        assert entry.name in text
    for section in ("Run", "Operate", "Set up", "Develop"):
        assert section in text


def test_every_listed_command_loads_and_has_help() -> None:
    runner = CliRunner()
    for entry in COMMANDS:
        result = runner.invoke(app, [entry.name, "--help"])
        assert result.exit_code == 0, (entry.name, result.output)
        assert "Usage: " in result.output


def test_loading_the_settings_imports_no_http_library() -> None:
    # Every command's start loads the settings; aiohttp is for what sends requests.
    code = "import sys, pim_hub.runtime.entry; print('aiohttp' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"


def test_help_lists_plugins_under_their_section_with_a_help_line() -> None:
    text = CliRunner().invoke(app, ["--help"]).output
    operate = text.split("Operate:")[1].split("Set up:")[0]
    assert "console" in operate and "Serve the operations console" in operate
    assert "(from " not in text  # every plugin of the product has its own help line
