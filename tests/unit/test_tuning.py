"""Process tuning: the start-up heap is frozen and full collections are spaced as asked."""

from __future__ import annotations

import gc

from pim_hub.runtime.tuning import DEFAULT_FULL_EVERY, DISPATCHER_FULL_GC_EVERY, quiet_gc


def test_quiet_gc_freezes_the_heap_and_sets_only_the_full_collection_threshold() -> None:
    before = gc.get_threshold()
    try:
        quiet_gc(full_every=DISPATCHER_FULL_GC_EVERY)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (before[0], before[1], DISPATCHER_FULL_GC_EVERY)
        quiet_gc()
        assert gc.get_threshold() == (before[0], before[1], DEFAULT_FULL_EVERY)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
