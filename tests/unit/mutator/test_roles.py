"""The mutator's roles: which agents a worker runs, and in which consumer group."""

from __future__ import annotations

from pathlib import Path

import pytest

from pim_hub.runtime.settings import Settings
from pim_hub.services.mutator.app import make_app
from pim_hub.services.mutator.settings import MutatorSettings


@pytest.mark.parametrize(
    ("role", "agents", "tables", "group"),
    [
        ("all", ["fan_out", "mutate", "mutate_bulk"], ["entity-state"], "roles-test"),
        ("mutate", ["mutate", "mutate_bulk"], ["entity-state"], "roles-test"),
        ("fanout", ["fan_out"], [], "roles-test-fanout"),
    ],
)
def test_a_role_runs_its_agents_in_its_group(
    role: str, agents: list[str], tables: list[str], group: str, tmp_path: Path
) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9")
    mutator = MutatorSettings(app_id="roles-test", data_dir=str(tmp_path), store="memory")
    app = make_app(settings, mutator, role)  # type: ignore[arg-type]
    assert sorted(a.name.rsplit(".", 1)[-1] for a in app.agents.values()) == agents
    assert sorted(app.tables.keys()) == tables
    assert app.conf.id == group
    subscribed = sorted(a.channel.get_topic_name() for a in app.agents.values())
    expected = {
        "mutate": "pim.snapshots",
        "mutate_bulk": "pim.snapshots.bulk",
        "fan_out": "hub.mutations",
    }
    assert subscribed == sorted(expected[a] for a in agents)


@pytest.mark.parametrize("partitions", [1, 6, 24])
def test_the_bulk_topic_has_a_buffer_its_fetches_never_fill(
    tmp_path: Path, partitions: int
) -> None:
    from pim_hub.services.mutator import app as mutator_app

    settings = Settings(kafka_bootstrap="127.0.0.1:9", topic_partitions=partitions)
    mutator = MutatorSettings(app_id="roles-bulk", data_dir=str(tmp_path), store="memory")
    app = make_app(settings, mutator, "mutate")
    bulk = next(a for a in app.agents.values() if a.name.endswith("mutate_bulk"))
    maxsize = bulk.channel.maxsize
    assert maxsize >= mutator_app.BULK_BUFFER
    # Faust stops fetching a partition at maxsize / 1.25 and still delivers what it has
    # fetched, a call of up to POLL_RECORDS per partition not yet stopped: that delivery
    # must fit, or it would block the live topic's delivery too.
    assert maxsize // 1.25 + partitions * mutator_app.POLL_RECORDS <= maxsize
    assert app.conf.broker_max_poll_records == mutator_app.POLL_RECORDS


def test_an_unknown_role_is_refused_before_anything_starts() -> None:
    from typer.testing import CliRunner

    from pim_hub.cli.main import app

    result = CliRunner().invoke(app, ["mutator", "--role", "diff"])
    assert result.exit_code == 2
    assert "one of all, mutate, fanout" in result.output


def test_a_fanout_worker_claims_no_table_directory(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9")
    mutator = MutatorSettings(app_id="roles-rocks", data_dir=str(tmp_path), store="rocksdb")
    app = make_app(settings, mutator, "fanout")
    assert str(app.conf.store) == "memory:"
    # The mutate workers' slots under the data dir stay free for them.
    assert not (tmp_path / "roles-rocks").exists()
