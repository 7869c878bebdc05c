"""Process tuning shared by the long-running services."""

from __future__ import annotations

import gc

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
