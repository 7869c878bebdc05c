"""The mutator's Faust consumer: stream partitions wait for the seek, gaps leave their record out."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from pim_hub.services.mutator.faust_patches import ResumeSafeConsumer

STREAM = TP("pim.snapshots", 0)
NEW = TP("pim.snapshots", 1)


def _consumer() -> ResumeSafeConsumer:
    class Transport(faust_aiokafka.Transport):
        Consumer = ResumeSafeConsumer

    app = faust.App("test-faust-patches", broker="kafka://127.0.0.1:9", store="memory://")
    app.transport = Transport(app.conf.broker_consumer, app)
    consumer = app.consumer
    assert isinstance(consumer, ResumeSafeConsumer)
    return consumer


def test_stream_partitions_of_a_new_assignment_wait_for_the_seek() -> None:
    async def main() -> None:
        consumer = _consumer()
        committed: dict[TP, int | None] = {STREAM: 21, NEW: 0}
        seeks: list[tuple[TP, int]] = []

        async def seek_to_committed() -> Mapping[TP, int | None]:
            return committed

        async def seek(tp: TP, offset: int) -> None:
            seeks.append((tp, offset))

        consumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign,assignment]
        consumer._seek = seek  # type: ignore[method-assign,assignment]
        consumer._set_active_tps(set())
        consumer._seek_pending = True  # as after on_partitions_assigned
        # Left by the previous assignment: a read offset ahead and a gap.
        consumer._read_offset[STREAM] = 87
        await consumer._add_gap(STREAM, 22, 35)

        consumer.resume_partitions({STREAM, NEW})
        assert not consumer._get_active_partitions() & {STREAM, NEW}  # held: not fetched

        assert consumer.flow_active
        await consumer.perform_seek()
        assert consumer._get_active_partitions() >= {STREAM, NEW}
        # Nothing is delivered until the caller empties the queues and resumes the flow.
        assert not consumer.flow_active
        assert consumer._read_offset[STREAM] == 21 and consumer._read_offset[NEW] == 0
        assert not consumer._gap.get(STREAM)
        # aiokafka does not seek to a committed offset of 0: the patch does.
        assert seeks == [(NEW, 0)]

        # Later resumes (no new assignment) are not held.
        consumer.pause_partitions({STREAM})
        consumer.resume_partitions({STREAM})
        assert STREAM in consumer._get_active_partitions()

    asyncio.run(main())


def test_a_gap_leaves_out_the_record_that_revealed_it() -> None:
    async def main() -> None:
        consumer = _consumer()
        consumer._committed_offset[STREAM] = 10
        # Faust's drain loop read 14 right after 11: 12 and 13 are the gap, 14 is not acked yet.
        await consumer._add_gap(STREAM, 12, 14)
        assert sorted((i.begin, i.end) for i in consumer._gap[STREAM]) == [(12, 14)]
        # 15 processed (a later record of the batch) before 14: the commit stops before 14.
        consumer._acked[STREAM].extend([10, 11, 15])
        assert consumer._new_offset(STREAM) == 14

    asyncio.run(main())
