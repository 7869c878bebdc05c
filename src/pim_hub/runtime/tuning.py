"""Process tuning shared by the long-running services."""

from __future__ import annotations

import gc
import logging
import os

logger = logging.getLogger(__name__)

#: Python's third collection threshold (young collections between full ones); 10 by default.
DEFAULT_FULL_EVERY = 10
#: The dispatcher's: its buffered jobs are what a full collection walks.
DISPATCHER_FULL_GC_EVERY = 100


def quiet_gc(full_every: int = DEFAULT_FULL_EVERY) -> None:
    """Keep what is loaded at start-up (modules, settings) out of full garbage collections.

    A webhook of 10 events, a page of 100 products or a batch of jobs is thousands of small
    dicts, and every full collection would otherwise walk the whole heap again. The young
    thresholds are left alone: raising them saved about 2% of the sync's CPU but let cyclic
    garbage holding whole HTTP responses pile up (peak RSS 109 -> 267 MB).

    `full_every` spaces full collections out. Freezing takes away the brake CPython puts on
    them (no full collection until a quarter of the long-lived heap is new): with the heap
    frozen, one runs every 10 middle collections, and in the dispatcher each walked every
    buffered job (three a second, 8-10 us of each job's 90 us). Cyclic garbage old enough to
    be in the oldest generation is then freed that much later; it is rare there, since
    reference counting frees the rest at once.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, full_every)


def give_way(nice: int, service: str) -> int:
    """Lower this process's CPU priority by `nice` (0: leave it): background work on a shared host.

    On one host every service shares the cores: during a catalogue load the load's own
    processes (the sync, the dispatchers below the most urgent lane, the projectors) would
    take as much CPU as the live path a price change travels. Raised niceness makes the
    kernel serve the live path first whenever it is runnable and leaves the load every cycle
    it does not need; with nothing live to do, background work runs at full speed. Only
    raising is done (no privilege needed); in containers each service has its own CPU
    request and this changes nothing between services. Returns the niceness now in effect.
    """
    if nice <= 0 or not hasattr(os, "nice"):
        return os.nice(0) if hasattr(os, "nice") else 0
    try:
        now = os.nice(nice)
    except OSError as exc:  # a platform or sandbox that refuses: the service still runs
        logger.warning("cpu priority not lowered", extra={"service": service, "error": str(exc)})
        return 0
    logger.info("cpu priority lowered", extra={"service": service, "nice": now})
    return now
