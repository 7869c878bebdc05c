"""Rebalances: partitions assigned, revoked or lost, and the jobs they hand back."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from confluent_kafka import Consumer, TopicPartition

from pim_hub.runtime import health, metrics
from pim_hub.services.dispatcher.base import DispatcherBase
from pim_hub.services.dispatcher.core.offsets import PartitionOffsets
from pim_hub.services.dispatcher.work import (
    TP,
    logger,
)


class RebalanceMixin(DispatcherBase):
    """Partitions coming and going (librdkafka's callbacks, inside consume())."""

    async def _wait_running(self, tps: set[TP] | None, deadline: float) -> None:
        """Wait until the started jobs (of some partitions) are acknowledged, or the deadline."""
        while time.monotonic() < deadline:
            if not any(n for tp, n in self._busy.items() if tps is None or tp in tps):
                return
            await asyncio.sleep(0.02)
        logger.warning("drain deadline passed; unfinished jobs will be read again")

    # ---- rebalance callbacks (run inside consume(): on a worker thread, or on the loop's) ----

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._parts[(tp.topic, tp.partition)] = PartitionOffsets()
        self._count_partitions()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            # Served by a poll on the loop's own thread: nothing can be awaited here. Queued
            # jobs go back and what is finished is committed; jobs being delivered finish
            # without a commit, so the new owner reads them again and finds them delivered
            # (the guard's delivered jobs): a second status, not a second delivery.
            offsets = self._release_now(tps)
        else:
            fut = asyncio.run_coroutine_threadsafe(self._release(tps), self._loop)
            try:
                offsets = fut.result(timeout=self.options.shutdown_timeout_s + 5)
            except Exception:
                logger.exception("could not drain revoked partitions")
                offsets = []
        if offsets and self.failure is None:
            with contextlib.suppress(Exception):
                consumer.commit(offsets=offsets, asynchronous=False)
        self._drop_partitions(tps)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else may own these already: drop the work, commit nothing.
        tps = {(tp.topic, tp.partition) for tp in partitions}
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            self._hand_back(tps)
        else:
            asyncio.run_coroutine_threadsafe(self._forget(tps), self._loop).result(timeout=10)
        self._drop_partitions(tps)

    def _drop_partitions(self, tps: set[TP]) -> None:
        """Forget the state of partitions this process no longer holds."""
        for tp in tps:
            self._parts.pop(tp, None)
            self._not_due.pop(tp, None)
            self._retry_awake.pop(tp, None)
            self._backpressured.discard(tp)
        self._count_partitions()

    def _count_partitions(self) -> None:
        metrics.DISPATCH_PARTITIONS.labels(self.driver_key, self.priority).set(len(self._parts))
        # Ready once the group has given this process an assignment (even an empty one).
        health.HEALTH.set("assigned", True, f"{len(self._parts)} partition(s)")

    def _hand_back(self, tps: set[TP]) -> None:
        for lane in self._lanes.values():
            lane.hand_back(tps)

    async def _forget(self, tps: set[TP]) -> None:
        self._hand_back(tps)

    async def _release(self, tps: set[TP]) -> list[TopicPartition]:
        """Hand back queued jobs of revoked partitions, let started ones finish, say what to commit."""
        self._hand_back(tps)
        await self._wait_running(tps, time.monotonic() + self.options.shutdown_timeout_s)
        return self._commit_points(tps)

    def _release_now(self, tps: set[TP]) -> list[TopicPartition]:
        """`_release` without waiting for the started jobs (on the loop's thread)."""
        self._hand_back(tps)
        running = sum(self._busy.get(tp, 0) for tp in tps)
        if running:
            logger.info(
                "partitions revoked while jobs were being delivered; the new owner reads them again",
                extra={"jobs": running, "partitions": len(tps)},
            )
        return self._commit_points(tps)

    def _commit_points(self, tps: set[TP]) -> list[TopicPartition]:
        out = []
        for tp in tps:
            part = self._parts.get(tp)
            point = part.commit_point() if part else None
            if point is not None:
                out.append(TopicPartition(tp[0], tp[1], point))
        return out
