"""The order chain: the mutator names an entity's previous mutation, fan-out the previous job,
and the record headers that carry them (pim_hub.schemas.ordering)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pim_hub.registry.model import IntegrationTarget
from pim_hub.schemas import ordering
from pim_hub.schemas.records import snapshot_record
from pim_hub.schemas.serde import Serde
from pim_hub.services.mutator.core.fanout import job_id, previous_jobs
from pim_hub.services.mutator.core.normalise import CHAIN_KEY
from pim_hub.services.mutator.processing import Outcome, SnapshotProcessor, chain

UID = "5c7a1b0e-3f0d-4a8e-9a51-0e6b1f5a2c11"
KEY = f"product:{UID}"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _snapshot(serde: Serde, n: int, price: str) -> bytes:
    updated = f"2026-03-01T10:0{n}:00+00:00"
    payload = {
        "uuid": UID,
        "identifier": "SKU-1",
        "values": {"price": [{"locale": None, "scope": None, "data": price}]},
        "updated": updated,
    }
    record = snapshot_record("product", KEY, payload, updated, "external")
    return serde.encode("Snapshot", record)


class _Table:
    """The mutator's table and agent, as far as the chain goes."""

    def __init__(self) -> None:
        self.serde = Serde()
        self.processor = SnapshotProcessor(self.serde, now=lambda: NOW, max_future_s=86_400)
        self.state: dict[str, dict[str, Any] | None] = {}

    def feed(self, value: bytes) -> tuple[Outcome, tuple[str, bytes] | None]:
        outcome = self.processor.process(KEY.encode(), value, self.state.get)
        header = chain(outcome, self.state.get)
        if outcome.new_state is not None:
            self.state[outcome.entity_key] = outcome.new_state
        return outcome, header


def test_each_mutation_names_the_one_before_and_other_outcomes_keep_the_link() -> None:
    table = _Table()
    first, header = table.feed(_snapshot(table.serde, 1, "10"))
    assert first.kind == "mutation" and header is None  # a creation names nothing
    assert first.mutation is not None
    made = ordering.epoch_ms(NOW)
    assert table.state[KEY][CHAIN_KEY] == [first.mutation["mutation_id"], made]  # type: ignore[index]

    again, header = table.feed(_snapshot(table.serde, 1, "10"))
    assert again.kind == "duplicate" and header is None
    # The chain is not content: the duplicate left the state as it was (nothing to write).
    assert again.new_state is None

    newer_same, header = table.feed(_snapshot(table.serde, 2, "10"))
    assert newer_same.kind == "noop" and header is None
    assert table.state[KEY][CHAIN_KEY] == [first.mutation["mutation_id"], made]  # type: ignore[index]

    second, header = table.feed(_snapshot(table.serde, 3, "12"))
    assert second.kind == "mutation" and second.mutation is not None
    assert header is not None and header[0] == ordering.PREV_MUTATION
    assert ordering.prev_mutation([header]) == (first.mutation["mutation_id"], made)
    # The mutation's id does not depend on the chain: the same content gives the same id.
    alone = _Table().feed(_snapshot(Serde(), 3, "12"))[0].mutation
    assert alone is not None and second.mutation["mutation_id"] == alone["mutation_id"]


def test_an_invalid_snapshot_neither_names_nor_moves_the_chain() -> None:
    table = _Table()
    first, _ = table.feed(_snapshot(table.serde, 1, "10"))
    bad, header = table.feed(b"\x00not a snapshot")
    assert bad.kind == "invalid" and header is None
    assert table.state[KEY][CHAIN_KEY][0] == first.mutation["mutation_id"]  # type: ignore[index]


def _target(iid: str, since: datetime | None) -> IntegrationTarget:
    return IntegrationTarget(
        iid,
        "webhook",
        True,
        None,
        active_since_ms=ordering.epoch_ms(since) if since is not None else None,
    )


def test_fan_out_names_the_previous_mutations_job_unless_the_integration_is_newer() -> None:
    made = NOW
    before, after = made - timedelta(minutes=5), made + timedelta(seconds=1)
    targets = [_target("old", before), _target("unknown", None), _target("new", after)]
    prev = ("m-1", ordering.epoch_ms(made))
    named = previous_jobs(prev, targets)
    assert named == {
        "old": (job_id("m-1", "old"), prev[1]),
        "unknown": (job_id("m-1", "unknown"), prev[1]),
    }
    assert previous_jobs(None, targets) == {}


def test_headers_round_trip_and_malformed_ones_are_ignored() -> None:
    value = ordering.prev_job_value("job-1", 1234)
    assert ordering.prev_job([(ordering.PREV_JOB, value)]) == ("job-1", 1234)
    assert ordering.prev_job({ordering.PREV_JOB: value.decode()}) == ("job-1", 1234)
    assert ordering.prev_job([("other", b"x")]) is None
    assert ordering.prev_job(None) is None
    for bad in (b"", b"job-1", b"job-1 soon", b" 12", b"\xff\xfe 1"):
        assert ordering.prev_job([(ordering.PREV_JOB, bad)]) is None, bad
    assert ordering.prev_mutation([(ordering.PREV_MUTATION, b"m 5")]) == ("m", 5)
