"""Offset tracking: commit only below the oldest unfinished record."""

from __future__ import annotations

from pim_hub.services.dispatcher.core.offsets import PartitionOffsets


def test_commit_waits_for_the_oldest_record() -> None:
    part = PartitionOffsets()
    for off in (10, 11, 12):
        part.take(off)
    part.done(11)
    part.done(12)
    assert part.commit_point() == 10
    part.committed_at(10)
    assert part.commit_point() is None
    part.done(10)
    assert part.commit_point() == 13


def test_rewind_commits_up_to_the_record_not_due() -> None:
    part = PartitionOffsets()
    part.take(5)
    part.done(5)
    part.rewind(6)
    assert part.commit_point() == 6
    assert part.in_flight() == 0


def test_skipped_records_are_finished_at_once() -> None:
    part = PartitionOffsets()
    part.skip(0)
    part.take(1)
    assert part.in_flight() == 1
    assert part.commit_point() == 1


def test_in_flight_counts_each_record_once() -> None:
    part = PartitionOffsets()
    part.take(3)
    part.take(3)  # read again after a rewind: still one record in flight
    part.take(4)
    assert part.in_flight() == 2
    part.done(3)
    part.done(3)  # a second acknowledgement changes nothing
    part.done(99)  # never taken
    assert part.in_flight() == 1
    assert part.commit_point() == 4
    part.done(4)
    assert part.in_flight() == 0
    assert part.commit_point() == 5
