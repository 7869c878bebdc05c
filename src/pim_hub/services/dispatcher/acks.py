"""The broker's acknowledgements of a record's outputs: the record is finished when all came."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Protocol

from confluent_kafka import KafkaError, Message

from pim_hub.runtime.kafka import (
    DeliveryFailed,
)
from pim_hub.services.dispatcher.core.offsets import PartitionOffsets
from pim_hub.services.dispatcher.work import TP


class AckHost(Protocol):
    """What an acknowledgement needs of its dispatcher."""

    _loop: asyncio.AbstractEventLoop | None
    _loop_thread: int | None
    _acked: deque[tuple[_Acks, KafkaError | None, Message]]
    _ack_wake: bool
    _busy: dict[TP, int]
    _parts: dict[TP, PartitionOffsets]

    def _take_acks(self) -> None: ...

    def _fail(self, reason: str) -> None: ...


class _Acks:
    """The outputs of one record still waiting for the broker; the record is finished at zero.

    It is the librdkafka delivery callback of each of those outputs: one small object per
    record instead of a future per output and a task per record.
    """

    __slots__ = ("d", "failed", "left", "offset", "tp")

    def __init__(self, dispatcher: AckHost, tp: TP, offset: int, left: int) -> None:
        self.d = dispatcher
        self.tp = tp
        self.offset = offset
        self.left = left
        self.failed = False

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        d = self.d
        if threading.get_ident() != d._loop_thread:
            # The producer's poll thread (or the final flush): queue the acknowledgement and
            # wake the loop once for all those one poll serves, not once per record.
            d._acked.append((self, err, msg))
            if not d._ack_wake:
                d._ack_wake = True
                assert d._loop is not None
                with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to mark
                    d._loop.call_soon_threadsafe(d._take_acks)
            return
        self.settle(err, msg)

    def settle(self, err: KafkaError | None, msg: Message) -> None:
        """One output acknowledged (or refused), on the loop thread."""
        d = self.d
        if err is not None and not self.failed:
            self.failed = True
            d._fail(f"the broker refused a write: {DeliveryFailed(msg.topic() or '?', err)}")
        self.left -= 1
        if self.left == 0:
            d._busy[self.tp] -= 1
            part = d._parts.get(self.tp)
            if part is not None and not self.failed:
                part.done(self.offset)
