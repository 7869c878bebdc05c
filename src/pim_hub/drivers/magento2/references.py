"""What a job may wait for: attribute types learned from the PIM, references being mapped."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pim_hub.drivers.base import EntityMappingService
from pim_hub.drivers.magento2.client import MagentoClient
from pim_hub.drivers.magento2.keys import M_TYPE

#: how often a job waiting for a reference looks at the mapping again (doubling up to the max)
REFERENCE_POLL_S = 0.05
REFERENCE_POLL_MAX_S = 0.4
#: how long an attribute type found nowhere is not looked up again
UNKNOWN_TYPE_RECHECK_S = 5.0
#: how long a job waits at most for a reference this driver is delivering at that moment
#: (a parent category or a configurable in another job or batch here); past it, or once that
#: delivery ends without mapping it, the job is retried as after `reference_wait_s`
IN_FLIGHT_WAIT_S = 60.0


class References:
    """Attribute types (learned, and not found for a while) and waits for mapped references."""

    def __init__(self) -> None:
        self.types: dict[str, str] = {}
        self.types_unknown: dict[str, float] = {}  # code -> when to look it up again
        self.pollers: dict[tuple[str, str], asyncio.Future[str | None]] = {}
        self.mapped = asyncio.Event()  # set (and replaced) when this driver maps something
        #: references this driver is delivering now: (entity type, key) -> deliveries
        self.in_flight: dict[tuple[str, str], int] = {}

    @contextlib.contextmanager
    def delivering(self, etype: str, keys: Iterable[str]) -> Iterator[None]:
        """Mark references as being delivered here: a job waiting for one of them waits for
        that delivery to end (up to IN_FLIGHT_WAIT_S) instead of `reference_wait_s` only.

        On a busy target a parent category's or a configurable's delivery took longer than
        the usual wait; its children then went through the retry topic (30 s and more),
        their own children after them, and live changes of those entities waited behind.
        """
        marked = [(etype, k) for k in keys]
        for ref in marked:
            self.in_flight[ref] = self.in_flight.get(ref, 0) + 1
        try:
            yield
        finally:
            for ref in marked:
                left = self.in_flight[ref] - 1
                if left:
                    self.in_flight[ref] = left
                else:
                    del self.in_flight[ref]
            # Waiters look again: mapped now, or the delivery failed and they stop waiting.
            self.wrote_mappings()

    async def learned(
        self, states: Sequence[dict[str, Any]], api: MagentoClient, mapping: EntityMappingService
    ) -> dict[str, str]:
        """The learned types of the attributes these entities may need (one look-up for all)."""
        config = api.config
        # A type the config declares wins over a learned one: no need to look it up.
        codes = {r.akeneo for r in config.attributes if r.type is None}
        if config.map_unlisted_attributes:
            for state in states:
                codes.update((state.get("values") or {}).keys())
        codes -= set(config.attribute_types)
        now = time.monotonic()
        missing = [
            c
            for c in sorted(codes)
            if c not in self.types and self.types_unknown.get(c, 0.0) <= now
        ]
        if missing:
            found = await mapping.get_many(M_TYPE, missing)
            self.types.update(found)
            # Types never learned (their attribute is not synced to this integration) are
            # asked again a little later, not for every product.
            later = now + UNKNOWN_TYPE_RECHECK_S
            self.types_unknown.update((c, later) for c in missing if c not in found)
        return {c: self.types[c] for c in codes if c in self.types}

    async def await_mapped(
        self, mapping: EntityMappingService, etype: str, keys: list[str], wait_s: float
    ) -> dict[str, str]:
        """Mapped targets of these keys, waiting up to wait_s for the missing ones.

        A reference missing during a load is nearly always being delivered at this moment
        (a parent category, the configurable of a variant): waiting a moment here is far
        cheaper than a trip through a retry topic.
        """
        found = await mapping.get_many(etype, keys)
        missing = [k for k in keys if k not in found]
        if not missing or wait_s <= 0:
            return found
        waited = await asyncio.gather(*(self.await_one(mapping, etype, k, wait_s) for k in missing))
        found.update((k, v) for k, v in zip(missing, waited, strict=True) if v is not None)
        return found

    async def await_one(
        self, mapping: EntityMappingService, etype: str, key: str, wait_s: float
    ) -> str | None:
        # One poller per reference in this process, however many jobs wait for it: fifty
        # variants of one configurable must not take the mapping's connections in turns.
        poll = self.pollers.get((etype, key))
        if poll is None:
            poll = asyncio.ensure_future(self.poll_mapped(mapping, etype, key, wait_s))
            self.pollers[(etype, key)] = poll
            poll.add_done_callback(lambda _: self.pollers.pop((etype, key), None))
        return await asyncio.shield(poll)

    async def poll_mapped(
        self, mapping: EntityMappingService, etype: str, key: str, wait_s: float
    ) -> str | None:
        """The mapping of one key once it exists, or None after wait_s (longer while this
        driver is delivering that reference: `delivering`)."""
        started = time.monotonic()
        interval = REFERENCE_POLL_S
        while True:
            limit = IN_FLIGHT_WAIT_S if (etype, key) in self.in_flight else wait_s
            left = started + limit - time.monotonic()
            if left <= 0:
                return None
            # Woken at once when this process maps something (the reference is often
            # delivered by another batch here), else after the interval.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.mapped.wait(), min(interval, left))
            found = await mapping.get(etype, key)
            if found is not None:
                return found
            interval = min(interval * 2, REFERENCE_POLL_MAX_S)

    def wrote_mappings(self) -> None:
        """Wake the jobs waiting for a reference: one of them may exist now."""
        self.mapped.set()
        self.mapped = asyncio.Event()
