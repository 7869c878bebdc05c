"""Backpressure and commits: what the poll loop may take, pause, resume and commit."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from pim_hub.services.dispatcher.base import DispatcherBase
from pim_hub.services.dispatcher.work import (
    TP,
    logger,
)


class FlowMixin(DispatcherBase):
    """The byte budget, paused partitions and offset commits of the poll loop."""

    # ---- poll loop steps --------------------------------------------------------------------

    def buffered_bytes(self) -> int:
        """Encoded bytes of the records taken and not finished, over all partitions."""
        return sum(part.open_bytes for part in self._parts.values())

    def _resume(self, consumer: Consumer) -> None:
        now = time.time()
        due = [tp for tp, at in self._not_due.items() if at <= now]
        for tp in due:
            del self._not_due[tp]
        easy: list[TP] = []
        if self._backpressured:
            half = self.options.max_buffered // 2
            easy = [
                tp
                for tp in self._backpressured
                if tp in self._parts and self._parts[tp].in_flight() <= half
            ]
        for tp in easy:
            self._backpressured.discard(tp)
        resume = [tp for tp in (*due, *easy) if tp not in self._not_due and tp in self._parts]
        resume = [tp for tp in resume if tp not in self._backpressured]
        if resume:
            consumer.resume([TopicPartition(t, p) for t, p in resume])

    def _apply_backpressure(self, consumer: Consumer) -> None:
        # The byte budget is kept by polling nothing (see run); a partition far ahead of the
        # others is paused, so one hot partition cannot take the whole budget.
        full = [
            tp
            for tp, part in self._parts.items()
            if tp not in self._backpressured and part.in_flight() >= self.options.max_buffered
        ]
        if full:
            # The poll loop keeps polling (and so stays in the group); these partitions
            # just stop fetching until their lanes catch up.
            consumer.pause([TopicPartition(t, p) for t, p in full])
            self._backpressured.update(full)

    def _poll_size(self) -> int:
        """Records to ask the next poll for: no more than the byte budget has room for.

        One poll of 500 creations' jobs would otherwise overshoot the budget many times over.
        0 once the budget is spent; at least 1 while there is any room (a single record may
        be bigger than the budget).
        """
        room = self.options.max_buffered_bytes - self.buffered_bytes()
        if room <= 0:
            return 0
        return max(1, min(self.options.poll_records, room // max(1, int(self._record_bytes))))

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        # An asynchronous commit refused by the broker (typically during a rebalance) must be
        # sent again: forget it was made, or a partition with no new work would stay behind.
        failed = [tp for tp in partitions if err is not None or tp.error is not None]
        for tp in failed:
            part = self._parts.get((tp.topic, tp.partition))
            if part is not None and part.committed == tp.offset:
                part.committed = None
        if failed:
            logger.info(
                "commit refused; it will be sent again",
                extra={"error": str(err or failed[0].error), "partitions": len(failed)},
            )

    def _commit(self, consumer: Consumer, *, asynchronous: bool) -> None:
        self._last_commit = time.monotonic()
        offsets = []
        for (topic, partition), part in self._parts.items():
            point = part.commit_point()
            if point is not None:
                offsets.append(TopicPartition(topic, partition, point))
                part.committed_at(point)
        if not offsets:
            return
        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:
            logger.warning("commit failed", extra={"error": str(exc)})
            for tp in offsets:
                stale = self._parts.get((tp.topic, tp.partition))
                if stale is not None:
                    stale.committed = None
