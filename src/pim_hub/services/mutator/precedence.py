"""Live before bulk: one snapshot batch processed at a time, and a waiting live batch goes first.

The mutator reads two topics of snapshots into one table: pim.snapshots (webhooks, patches:
live changes) and pim.snapshots.bulk (catalogue loads). A batch reads the table, sends its
mutations, waits for their acknowledgements and only then writes the table. The gate lets one
batch at a time *process* (read the table, decide, send) and lets a waiting live batch in
before any bulk batch. A batch that has sent everything releases the gate (`Turn.release`)
and waits for its acknowledgements and writes its table outside it, its entities marked in
flight until it has: a batch processing one of them meanwhile waits for it to settle and
decides that snapshot again (`Turn.in_flight_elsewhere`, `Turn.settled`), so it reads the
state the other batch wrote and its mutation follows the other's in the log. A live batch
thus no longer waits for the acknowledgements of the bulk part before it, only for the
processing of the snapshot in hand; each kind sends through its own producer, so a live batch
waits for its own records only.

A bulk batch also gives way in its middle (`bulk_in_parts`): it yields the event loop between
its snapshots, and once a live batch waits it stops after the snapshot in hand, releases the
gate and finishes the part it has done; the rest of its snapshots follow as the next part.

Between the two topics an entity's snapshots are not in order; the version check decides
(an older snapshot is `stale` whichever topic it came by), so a bulk snapshot read after a
newer live one never wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Literal, TypeVar

T = TypeVar("T")
Kind = Literal["live", "bulk"]


class Turn:
    """A batch's hold of the gate: processing under it, then settling outside it."""

    def __init__(
        self, gate: Precedence, kind: Kind, on_release: Callable[[], None] | None = None
    ) -> None:
        self._gate = gate
        self.kind: Kind = kind
        self._settled = asyncio.Event()
        self._keys: list[str] = []
        self._holding = True
        #: called once when the turn gives the gate up (released, or ended while holding it)
        self._on_release = on_release

    @property
    def holding(self) -> bool:
        """Whether the turn still holds the gate (it has not released it)."""
        return self._holding

    def give_way(self) -> bool:
        """Whether a bulk part should stop after its item: a live batch waits (never, live)."""
        return self.kind == "bulk" and self._gate.live_is_waiting()

    def in_flight_elsewhere(self, key: str) -> bool:
        """Whether another batch has processed `key` and not yet written its state."""
        turn = self._gate._in_flight.get(key)
        return turn is not None and turn is not self

    async def settled(self, key: str) -> None:
        """Wait until no other batch has `key` in flight (its state written to the table)."""
        while (turn := self._gate._in_flight.get(key)) is not None and turn is not self:
            await turn._settled.wait()

    def release(self, keys: Iterable[str]) -> None:
        """Everything is sent: let the next batch process; `keys` stay in flight until the
        turn ends (its acknowledgements and table writes done)."""
        if not self._holding:
            return
        in_flight = self._gate._in_flight
        for key in keys:
            in_flight[key] = self
            self._keys.append(key)
        self._give_up()

    def _give_up(self) -> None:
        self._holding = False
        self._gate._lock.release()
        if self._on_release is not None:
            self._on_release()

    def _end(self) -> None:
        in_flight = self._gate._in_flight
        for key in self._keys:
            if in_flight.get(key) is self:
                del in_flight[key]
        self._settled.set()
        if self._holding:
            self._give_up()


#: Handles the items it is given, in order, under the turn; may stop early once the turn says
#: to give way, and returns how many items it handled (the first n).
PartHandler = Callable[[Sequence[T], Turn], Awaitable[int]]


class Precedence:
    """One batch processing at a time; live batches before bulk ones (module docstring)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._live_waiting = 0
        self._no_live = asyncio.Event()
        self._no_live.set()
        self._in_flight: dict[str, Turn] = {}
        #: times a bulk batch stood aside for a live one: waited for it, or stopped in its
        #: middle to let it in (a metric of the isolation at work)
        self.yielded = 0

    @property
    def live_waiting(self) -> int:
        """Live batches waiting for (or holding) the gate."""
        return self._live_waiting

    @property
    def in_flight(self) -> int:
        """Entities processed by a batch that has not yet written their state."""
        return len(self._in_flight)

    def live_is_waiting(self) -> bool:
        """Whether a live batch waits: a bulk part in progress should stop after its item."""
        return self._live_waiting > 0

    async def bulk_in_parts(self, items: Sequence[T], handle: PartHandler[T]) -> int:
        """Handle a bulk batch in as many parts as live batches cut it into; the parts.

        Each part is a turn; `handle` gets the items not yet handled and the turn, and returns
        how many it handled (at least one is counted, so the batch always moves on). A part
        that stopped early counts as a yield.
        """
        start = parts = 0
        while start < len(items):
            async with self.bulk() as turn:
                done = await handle(items[start:], turn)
            parts += 1
            start += max(1, done)
            if start < len(items):
                self.yielded += 1
        return parts

    @asynccontextmanager
    async def live(self) -> AsyncIterator[Turn]:
        """A turn for a live batch; it waits only for a batch already processing."""
        self._live_waiting += 1
        self._no_live.clear()
        try:
            await self._lock.acquire()
        except BaseException:
            self._live_left()
            raise
        # Counted as waiting until it gives the gate up: a bulk batch that got the lock
        # meanwhile stands aside. While it settles, a bulk part may process.
        turn = Turn(self, "live", on_release=self._live_left)
        try:
            yield turn
        finally:
            turn._end()

    def _live_left(self) -> None:
        self._live_waiting -= 1
        if not self._live_waiting:
            self._no_live.set()

    @asynccontextmanager
    async def bulk(self) -> AsyncIterator[Turn]:
        """A turn for a bulk batch, once no live batch waits."""
        while True:
            await self._no_live.wait()
            await self._lock.acquire()
            if not self._live_waiting:
                break
            # A live batch came while this one waited for the lock: it goes first.
            self._lock.release()
            self.yielded += 1
        turn = Turn(self, "bulk")
        try:
            yield turn
        finally:
            turn._end()
