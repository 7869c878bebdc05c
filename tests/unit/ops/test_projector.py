"""The shared projector loop: decode with errors passed over, one transaction, commit after."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaError

from pim_hub.runtime import metrics
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.serde import Serde
from pim_hub.services.projections import base as projector_mod
from pim_hub.services.projections.deliveries import Projector
from pim_hub.services.projections.entities import EntityProjector

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "avro" / "v1"
TOPIC = topics.DELIVERY_STATUS


class Msg:
    """A consumed message as confluent-kafka hands it over."""

    def __init__(
        self, partition: int, offset: int, value: bytes | None, error: KafkaError | None = None
    ) -> None:
        self._partition, self._offset, self._value, self._error = partition, offset, value, error

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return None


class Journal:
    """What the fakes saw, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []


class Cursor:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def executemany(self, sql: str, rows: list[dict[str, Any]]) -> None:
        self.journal.events.append(("executemany", [r["job_id"] for r in rows]))


class Conn:
    """A connection whose transaction and cursor record when they open and close."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.journal.events.append(("begin", None))
        try:
            yield
        except BaseException:
            self.journal.events.append(("rollback", None))
            raise
        self.journal.events.append(("commit-tx", None))

    @contextmanager
    def cursor(self) -> Iterator[Cursor]:
        yield Cursor(self.journal)

    def close(self) -> None:
        self.journal.events.append(("conn-close", None))


class Consumer:
    """A consumer that hands over scripted batches, then nothing."""

    def __init__(self, journal: Journal, batches: list[list[Msg]]) -> None:
        self.journal = journal
        self.batches = batches

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.journal.events.append(("subscribe", topics))

    def consume(self, n: int, timeout: float) -> list[Msg]:
        return self.batches.pop(0) if self.batches else []

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        assert asynchronous is False
        self.journal.events.append(
            ("commit-offsets", sorted((o.topic, o.partition, o.offset) for o in offsets))
        )

    def close(self) -> None:
        self.journal.events.append(("consumer-close", None))


@pytest.fixture
def status() -> dict[str, Any]:
    return Serde().decode("DeliveryStatus", (FIXTURES / "DeliveryStatus.bin").read_bytes())


def encode(status: dict[str, Any], job_id: str) -> bytes:
    return Serde().encode("DeliveryStatus", {**status, "job_id": job_id})


def settings() -> Settings:
    return Settings(
        kafka_bootstrap="unit.invalid:9092",
        database_url="postgresql://unit.invalid/test",
        schema_registry_url=None,
    )


def test_a_batch_is_written_in_one_transaction_then_committed_past_every_message(
    status: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal()
    proj = Projector(settings())
    eof = Msg(0, 3, None, KafkaError(KafkaError._PARTITION_EOF))
    batch = [
        eof,
        Msg(0, 4, encode(status, "j-1")),
        Msg(0, 5, b"not avro"),
        Msg(1, 9, encode(status, "j-2")),
    ]
    counted = metrics.PROJECTOR_STATUSES.labels(status["status"])
    before = counted._value.get()
    with caplog.at_level(logging.WARNING):
        proj.handle(Consumer(journal, []), Conn(journal), batch)  # type: ignore[arg-type]

    assert journal.events == [
        ("begin", None),
        ("executemany", ["j-1", "j-2"]),
        ("commit-tx", None),
        # The undecodable record's offset is passed too: it is logged, never retried.
        ("commit-offsets", [(TOPIC, 0, 6), (TOPIC, 1, 10)]),
    ]
    assert proj.projected == 2
    assert counted._value.get() == before + 2
    [logged] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert logged.name == "pim_hub.services.projections.deliveries"
    assert logged.getMessage() == "undecodable delivery status skipped"
    assert (logged.partition, logged.offset) == (0, 5)  # type: ignore[attr-defined]


def test_offsets_are_not_committed_when_the_write_fails(status: dict[str, Any]) -> None:
    journal = Journal()

    class Failing(Projector):
        def write(self, cur: Any, records: list[dict[str, Any]]) -> None:
            raise RuntimeError("database gone")

    with pytest.raises(RuntimeError, match="database gone"):
        Failing(settings()).handle(
            Consumer(journal, []),  # type: ignore[arg-type]
            Conn(journal),  # type: ignore[arg-type]
            [Msg(0, 4, encode(status, "j-1"))],  # type: ignore[list-item]
        )
    assert journal.events == [("begin", None), ("rollback", None)]


def test_a_batch_of_undecodable_mutations_is_counted_and_passed_without_a_write() -> None:
    journal = Journal()
    proj = EntityProjector(settings())
    proj.handle(
        Consumer(journal, []),  # type: ignore[arg-type]
        Conn(journal),  # type: ignore[arg-type]
        [Msg(2, 7, b""), Msg(2, 8, b"\x00garbage")],  # type: ignore[list-item]
    )
    assert journal.events == [("commit-offsets", [(TOPIC, 2, 9)])]
    assert proj.counts == {"undecodable": 2}


def test_run_subscribes_projects_and_closes_everything_once_stopped(
    status: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal()
    proj = Projector(settings())
    consumer = Consumer(journal, [[Msg(0, 0, encode(status, "j-1"))], []])
    polls = 0

    def consume(n: int, timeout: float) -> list[Msg]:
        nonlocal polls
        polls += 1
        if polls == 2:
            proj.stop()  # as the SIGTERM handler does: the loop ends after this poll
        return consumer.batches.pop(0) if consumer.batches else []

    consumer.consume = consume  # type: ignore[method-assign]
    monkeypatch.setattr(projector_mod, "Consumer", lambda config: consumer)
    monkeypatch.setattr(psycopg, "connect", lambda url, autocommit: Conn(journal))
    proj.run()

    assert polls == 2
    assert journal.events == [
        ("subscribe", [TOPIC]),
        ("begin", None),
        ("executemany", ["j-1"]),
        ("commit-tx", None),
        ("commit-offsets", [(TOPIC, 0, 1)]),
        ("consumer-close", None),
        ("conn-close", None),
    ]
