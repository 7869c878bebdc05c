"""The mutator's gate between live and bulk snapshot batches (services/mutator/precedence)."""

from __future__ import annotations

import asyncio

from pim_hub.services.mutator.precedence import Precedence


def test_a_live_batch_goes_before_bulk_batches_that_waited_longer() -> None:
    gate = Precedence()

    async def scenario() -> list[str]:
        order: list[str] = []
        release = asyncio.Event()

        async def bulk(name: str, hold: asyncio.Event | None = None) -> None:
            async with gate.bulk():
                order.append(name)
                if hold is not None:
                    await hold.wait()

        async def live(name: str) -> None:
            async with gate.live():
                order.append(name)

        running = asyncio.create_task(bulk("bulk-1", release))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(bulk(f"bulk-{n}")) for n in (2, 3)]
        await asyncio.sleep(0)
        live_task = asyncio.create_task(live("live"))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(running, live_task, *waiting)
        return order

    order = asyncio.run(scenario())
    # The running bulk batch finishes; the live one goes next, before the older bulk waiters.
    assert order[:2] == ["bulk-1", "live"]
    assert sorted(order[2:]) == ["bulk-2", "bulk-3"]
    # bulk-2 had reached the lock before the live batch came: it stood aside, counted.
    assert gate.yielded >= 1
    assert gate.live_waiting == 0


def test_batches_never_overlap_and_bulk_is_not_starved_between_live_batches() -> None:
    async def scenario() -> tuple[int, list[str]]:
        gate = Precedence()
        inside = 0
        most = 0
        order: list[str] = []

        async def run(kind: str, n: int) -> None:
            nonlocal inside, most
            ctx = gate.live() if kind == "live" else gate.bulk()
            async with ctx:
                inside += 1
                most = max(most, inside)
                order.append(f"{kind}-{n}")
                await asyncio.sleep(0.001)  # an acknowledgement round trip
                inside -= 1

        async def lives() -> None:
            for n in range(5):
                await run("live", n)
                await asyncio.sleep(0.005)  # live batches come now and then

        await asyncio.gather(lives(), *(run("bulk", n) for n in range(20)))
        return most, order

    most, order = asyncio.run(scenario())
    assert most == 1
    assert sum(1 for o in order if o.startswith("bulk")) == 20
    assert sum(1 for o in order if o.startswith("live")) == 5
