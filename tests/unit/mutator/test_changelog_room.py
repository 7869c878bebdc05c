"""Room for the live agent's table writes: Faust stops delivering every record once its
producer buffer holds more than max_messages table writes; the bulk agent stops adding at
BULK_CHANGELOG_HIGH, and the live agent's writes above that must not stop the delivery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pim_hub.runtime.settings import Settings
from pim_hub.services.mutator.app import BULK_CHANGELOG_HIGH, CHANGELOG_BUFFER, make_app
from pim_hub.services.mutator.settings import MutatorSettings


def _buffer(tmp_path: Path, queued: int) -> object:
    app = make_app(
        Settings(kafka_bootstrap="127.0.0.1:9"),
        MutatorSettings(app_id=f"room-{tmp_path.name}", data_dir=str(tmp_path)),
        "mutate",
    )
    buffer = app.producer.buffer
    # Table writes not sent yet (no broker here: nothing drains them).
    for _ in range(queued):
        buffer.pending.put_nowait(object())
    assert buffer.size == queued
    return buffer


def test_live_writes_above_the_bulk_limit_do_not_stop_delivery(tmp_path: Path) -> None:
    # The bulk agent at its limit, and 20 s of live changes at 60 a second while the broker
    # acknowledges nothing.
    buffer = _buffer(tmp_path, BULK_CHANGELOG_HIGH + 20 * 60)
    asyncio.run(asyncio.wait_for(buffer.wait_until_ebb(), 2))  # type: ignore[attr-defined]


def test_the_buffer_is_still_bounded(tmp_path: Path) -> None:
    # Past CHANGELOG_BUFFER Faust stops to send the writes first (here it cannot: its
    # producer never started), so the memory they hold stays bounded.
    buffer = _buffer(tmp_path, CHANGELOG_BUFFER + 1)
    with pytest.raises(RuntimeError, match="Cannot flush"):
        asyncio.run(asyncio.wait_for(buffer.wait_until_ebb(), 2))  # type: ignore[attr-defined]
