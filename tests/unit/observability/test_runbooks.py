"""Every alert links a runbook section that exists, and every runbook section is an alert's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from typer._click.core import Context

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "infra" / "prometheus" / "alerts.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading (lower case, punctuation dropped)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def sections() -> dict[str, str]:
    """Anchor -> text of each `## ` section of the runbooks."""
    out: dict[str, str] = {}
    current = None
    for line in RUNBOOKS.read_text().splitlines():
        if line.startswith("## "):
            current = github_anchor(line[3:])
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [r for g in data["groups"] for r in g["rules"] if "alert" in r]


def test_the_anchor_rule_matches_githubs() -> None:
    assert github_anchor("PimHubLagImmediate") == "pimhublagimmediate"
    assert github_anchor("When a group falls behind (lag)") == "when-a-group-falls-behind-lag"


def test_every_alert_has_a_runbook_url_to_its_own_section() -> None:
    found = sections()
    assert len(rules()) >= 8
    for rule in rules():
        url = rule.get("annotations", {}).get("runbook_url")
        assert url, f"{rule['alert']} has no runbook_url"
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.path.endswith("/docs/runbooks.md"), url
        assert parts.fragment == github_anchor(rule["alert"]), url
        assert parts.fragment in found, f"{rule['alert']}: no section #{parts.fragment}"


def test_every_section_says_what_it_means_how_to_confirm_and_fix_with_hub_commands() -> None:
    alerts = {github_anchor(r["alert"]) for r in rules()}
    found = sections()
    assert set(found) == alerts, "a runbook section without an alert, or the reverse"
    for anchor, text in found.items():
        for part in ("**Means:**", "**Confirm:**", "**Fix:**"):
            assert part in text, f"#{anchor} lacks {part}"
        assert "`hub " in text, f"#{anchor} names no hub command"


def test_every_hub_command_in_the_runbooks_exists() -> None:
    from typer.main import get_command

    from pim_hub.cli.main import app

    root: Any = get_command(app)
    text = RUNBOOKS.read_text()
    used = set(re.findall(r"`hub ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", text))
    used |= set(re.findall(r"^hub ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", text, re.M))
    assert used
    # Commands are loaded on use: ask the group, as click does when one runs.
    ctx = Context(root)
    names = root.list_commands(ctx)
    for name, sub in used:
        assert name in names, f"hub {name} does not exist"
        command = root.get_command(ctx, name)
        if sub and hasattr(command, "commands"):
            assert sub in command.commands, f"hub {name} {sub} does not exist"
