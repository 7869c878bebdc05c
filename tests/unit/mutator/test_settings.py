"""The mutator's own settings: the HUB_MUTATOR_* names users set, read by its entry point."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pim_hub.cli.main import app
from pim_hub.runtime.settings import Settings
from pim_hub.services.mutator.settings import MutatorSettings, default_mutator_settings


def test_the_mutator_reads_the_hub_mutator_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_MUTATOR_APP_ID", "shop-mutator")
    monkeypatch.setenv("HUB_MUTATOR_DATA_DIR", "/var/lib/hub")
    monkeypatch.setenv("HUB_MUTATOR_STORE", "rocksdb")
    mutator = MutatorSettings()
    assert (mutator.app_id, mutator.data_dir, mutator.store) == (
        "shop-mutator",
        "/var/lib/hub",
        "rocksdb",
    )
    assert mutator.group("mutate") == mutator.group("all") == "shop-mutator"
    assert mutator.group("fanout") == "shop-mutator-fanout"
    assert mutator.changelog_topic == "shop-mutator-entity-state-changelog"
    # The shared settings no longer carry them: one place says what the mutator uses.
    assert not any(name.startswith("mutator") for name in Settings.model_fields)


def test_the_defaults_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_MUTATOR_APP_ID", "shop-mutator")
    defaults = default_mutator_settings()
    assert (defaults.app_id, defaults.data_dir, defaults.store) == (
        "hub-mutator",
        ".hub/mutator",
        "memory",
    )


def test_an_unknown_store_stops_the_mutator_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUB_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("HUB_MUTATOR_STORE", "disk")
    result = CliRunner().invoke(app, ["mutator"])
    assert result.exit_code == 2
    assert "HUB_MUTATOR_STORE: Input should be 'memory' or 'rocksdb'" in result.output
