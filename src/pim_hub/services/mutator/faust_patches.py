"""Faust consumer fixes: a rebalance never makes the mutator skip or reorder a record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from faust.transport.consumer import ensure_TPset
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

logger = logging.getLogger(__name__)


class ResumeSafeConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose return to the committed offsets loses no record.

    Cause (faust-streaming 0.15.3 with aiokafka 0.14). When a rebalance ends, Faust's recovery
    (`Recovery.on_recovery_completed`, or `_resume_streams` for apps without tables) does:

    1. `consumer.resume_partitions(stream partitions)`, with the consumer flow already on (the
       recovery turned it on to read the changelogs);
    2. `await consumer.perform_seek()`: fetch the committed offsets, seek there and set Faust's
       `_read_offset` of every partition to its committed offset;
    3. `app.flow_control.resume()`, which empties every stream queue (they are `clear_on_resume`),
       then `consumer.resume_flow()`.

    Between 1 and 3 the fetcher goes on delivering stream records (step 2 waits for the broker),
    and `_read_offset` still holds whatever the previous assignment left there. What is delivered
    in that window is partly taken by `take_events` (processed now) and partly emptied from the
    queues at step 3, while `_read_offset` moves on as if it had all been read:

    - records fetched again from the committed offset after the seek are dropped as "already read";
    - a batch fetched before the seek and delivered after it makes `_drain_messages` see a hole
      (record 35 after the reset to 21) and register a gap 22..35 that `_new_offset` counts as
      acknowledged (`Consumer._add_gap` even puts the record that revealed it, 35, in the gap);
    - records read before `_read_offset` was reset are processed before older ones of the same
      entity that are read again later: the mutator's version guard then calls the older ones
      stale, and their mutations never exist.

    Seen in traces of a mutator group under kills and joins: records 23..34 of a partition never
    processed and committed over; record 92 (version 8) processed before record 80 (version 7),
    which then came out "stale". aiokafka's `seek_to_committed` moreover seeks only to committed
    offsets above 0, so a partition committed at 0 (a new group, or one parked at the end of an
    empty topic, as in the scale test) is not rewound at all. The scale test saw this as an
    occasional missing delivery.

    Fix: after an assignment, the stream partitions the recovery resumes are held back (neither
    fetched nor delivered) until `perform_seek` has sought them; the seek then stops the flow
    before it releases them, so nothing is delivered before the caller has emptied the queues
    and resumed the flow. The seek rewinds every stream partition explicitly (committed
    offset 0 and "never committed" included), resets the read offsets and forgets gaps computed
    from reads it discards. `_add_gap` leaves the record that revealed a gap out of it. The input
    topics are neither compacted nor transactional, so a real gap does not occur there.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Stream partitions assigned but not yet sought: resuming them waits for the seek.
        self._seek_pending = False
        self._held: set[TP] = set()
        # One seek at a time: the drain loop seeks too when records come while the flow is off.
        self._seek_lock = asyncio.Lock()

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """A new assignment: its stream partitions are delivered only once sought."""
        self._seek_pending = True
        self._held.clear()
        await super().on_partitions_assigned(assigned, generation_id)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        """Resume partitions; stream partitions of a new assignment wait for `perform_seek`."""
        tpset = ensure_TPset(tps)
        if self._seek_pending:
            stream = {tp for tp in tpset if not self._is_changelog_tp(tp)}
            self._held |= stream
            self._buffered_partitions.difference_update(stream)
            tpset -= stream
        super().resume_partitions(tpset)

    async def perform_seek(self) -> None:
        """Seek every partition to its committed offset, then release the held partitions."""
        async with self._seek_lock:
            await self._seek_all_to_committed()
            if self._held:
                # Called by the recovery, which empties the queues and resumes the flow right
                # after: until then nothing may be delivered, or the emptying would lose it.
                if self.flow_active:
                    self.stop_flow()
                held, self._held = self._held, set()
                self._seek_pending = False
                super().resume_partitions(held)

    async def _seek_all_to_committed(self) -> None:
        committed = await self.seek_to_committed()
        for tp, offset in committed.items():
            if self._is_changelog_tp(tp):
                continue  # table recovery owns the changelog positions
            try:
                if offset == 0:
                    # aiokafka seeks only to committed offsets above 0.
                    await self._seek(tp, 0)
                elif offset is None and self.app.conf.consumer_auto_offset_reset == "earliest":
                    # Never committed: reading started at the beginning, start there again.
                    await self._thread.seek_to_beginning(tp)
            except Exception as exc:
                # Unassigned meanwhile: the rebalance under way seeks it again.
                logger.warning(
                    "cannot rewind a partition", extra={"tp": str(tp), "error": str(exc)}
                )
        # Faust's own bookkeeping, as in Consumer.perform_seek.
        self._read_offset.update(
            {
                tp: offset if offset is not None and offset >= 0 else None
                for tp, offset in committed.items()
            }
        )
        self._committed_offset.update(
            {
                TP(tp.topic, tp.partition): offset or None
                for tp, offset in committed.items()
                if offset is not None
            }
        )
        for tp in committed:
            # Gaps were computed from reads the seek discards; real ones are found again.
            self._gap.pop(tp, None)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # Faust passes the offset of the record that revealed the gap and adds it to the gap
        # (intervaltree ends are exclusive, Faust adds 1): that record would count as acked
        # before it is processed.
        await super()._add_gap(tp, offset_from, offset_to - 1)
