"""Live before bulk: one snapshot batch at a time, and a waiting live batch goes first.

The mutator reads two topics of snapshots into one table: pim.snapshots (webhooks, patches:
live changes) and pim.snapshots.bulk (catalogue loads). Their batches must not run
interleaved: a batch reads the table, waits for its mutations' acknowledgements and only then
writes the table, so a second batch running meanwhile would read state the first is about to
replace. The gate runs one batch at a time and lets a waiting live batch in before any bulk
batch; a live batch therefore waits at most for the one bulk batch already running.

Between the two topics an entity's snapshots are not in order; the version check decides
(an older snapshot is `stale` whichever topic it came by), so a bulk snapshot read after a
newer live one never wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Precedence:
    """One batch at a time; live batches before bulk ones (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._live_waiting = 0
        self._no_live = asyncio.Event()
        self._no_live.set()
        #: bulk batches that stood aside for a live one (a metric of the isolation at work)
        self.yielded = 0

    @property
    def live_waiting(self) -> int:
        """Live batches waiting for (or holding) the gate."""
        return self._live_waiting

    @asynccontextmanager
    async def live(self) -> AsyncIterator[None]:
        """Hold the gate for a live batch; it waits only for a batch already running."""
        self._live_waiting += 1
        self._no_live.clear()
        try:
            async with self._lock:
                yield
        finally:
            self._live_waiting -= 1
            if not self._live_waiting:
                self._no_live.set()

    @asynccontextmanager
    async def bulk(self) -> AsyncIterator[None]:
        """Hold the gate for a bulk batch, once no live batch waits."""
        while True:
            await self._no_live.wait()
            await self._lock.acquire()
            if not self._live_waiting:
                break
            # A live batch came while this one waited for the lock: it goes first.
            self._lock.release()
            self.yielded += 1
        try:
            yield
        finally:
            self._lock.release()
