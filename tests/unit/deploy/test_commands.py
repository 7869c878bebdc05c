"""The command checker used by the deployment tests rejects what `hub` would reject."""

from __future__ import annotations

import pytest

from tests.unit.deploy.commands import hub_invocations_in_shell, resolve


def test_a_real_command_with_its_options_resolves() -> None:
    args = ["dispatcher", "--driver", "webhook", "--priority", "low"]
    assert resolve(args) == ("dispatcher",)


@pytest.mark.parametrize(
    "args",
    [["no-such-command"], ["dispatcher", "--drive", "webhook"], ["topics"], ["dispatcher"]],
)
def test_unknown_commands_options_and_missing_values_are_rejected(args: list[str]) -> None:
    with pytest.raises(ValueError, match="hub"):
        resolve(args)


def test_hub_commands_are_found_in_a_shell_loop() -> None:
    script = 'while hub sync akeneo --delta; do sleep "$${SYNC_INTERVAL_S:-300}"; done'
    assert hub_invocations_in_shell(script) == [["sync", "akeneo", "--delta"]]
