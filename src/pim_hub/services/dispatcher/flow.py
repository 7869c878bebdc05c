"""Backpressure and commits: what the poll loop may take, pause, resume and commit."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pim_hub.services.dispatcher.base import DispatcherBase
from pim_hub.services.dispatcher.work import (
    TP,
    logger,
)

#: Idle retry partitions are looked for this often, and rest this long at least and at most.
RETRY_REST_CHECK_S = 0.1
RETRY_REST_MIN_S = 0.5
RETRY_REST_MAX_S = 5.0
#: Beyond two fetch waits, how long a retry partition, once assigned or resumed, may fetch
#: before it is judged idle.
RETRY_AWAKE_MARGIN_S = 0.2


def retry_rest_s(delays: tuple[int, ...]) -> float:
    """A sixth of the shortest retry tier, from RETRY_REST_MIN_S to RETRY_REST_MAX_S."""
    return min(RETRY_REST_MAX_S, max(RETRY_REST_MIN_S, min(delays) / 6)) if delays else 0.0


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

    def _rest_idle_retries(self, consumer: Consumer) -> None:
        """Pause the retry partitions that are at their end; `_resume` reads them again later.

        Every fetch asks the broker about every partition that is not paused, and each
        dispatcher reads its jobs topic and every retry tier: three quarters of the partitions
        it fetched were retry partitions with nothing in them. A retry is due at the earliest
        a tier's delay after it was written, so reading an idle tier every `retry_rest_s()`
        (a sixth of the shortest tier, from 0.5 to 5 s) delays no retry by more than that,
        and a closing circuit (`release_retries`) still reads them again at once.
        """
        now = time.monotonic()
        if now < self._retry_rest_check_at or not self.retry_topics:
            return
        self._retry_rest_check_at = now + RETRY_REST_CHECK_S
        retry = set(self.retry_topics)
        # Two fetch waits: one fetch may have been under way when the partition resumed.
        awake_s = 2 * self._fetch_wait_s + RETRY_AWAKE_MARGIN_S
        resting: list[TopicPartition] = []
        for tp in self._parts:
            if tp[0] not in retry or tp in self._not_due or tp in self._backpressured:
                self._retry_awake.pop(tp, None)
                continue
            # A partition just assigned or resumed gets time to fetch before it is judged.
            awake = self._retry_awake.setdefault(tp, now)
            if now - awake < awake_s or self._busy.get(tp):
                continue
            part = TopicPartition(tp[0], tp[1])
            try:
                position = consumer.position([part])[0].offset
                _low, high = consumer.get_watermark_offsets(part, cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue  # nothing fetched yet: no end to compare with
            # No valid position: nothing was read since the partition was assigned or
            # resumed, though it had time to fetch: it is at its end too.
            if position < 0 or position >= high:
                if position >= 0:
                    # Read again from here (a pause drops what librdkafka has fetched).
                    try:
                        consumer.seek(TopicPartition(tp[0], tp[1], position))
                    except KafkaException:
                        continue  # being revoked, say: looked at again later
                resting.append(part)
        if resting:
            consumer.pause(resting)
            due = time.time() + self.retry_rest_s()
            for part in resting:
                tp = (part.topic, part.partition)
                self._not_due[tp] = due
                self._retry_awake.pop(tp, None)

    def retry_rest_s(self) -> float:
        """How long an idle retry partition is not fetched (see `_rest_idle_retries`)."""
        return retry_rest_s(self.options.retry_delays_s)

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
