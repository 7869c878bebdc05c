"""The mutator's gate between live and bulk snapshot batches (services/mutator/precedence)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from pim_hub.services.mutator.precedence import Precedence, Turn


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


def test_a_live_batch_gets_in_between_the_snapshots_of_a_bulk_batch() -> None:
    """A bulk batch in progress stops after the snapshot in hand; the rest follows the live one."""
    gate = Precedence()

    async def scenario() -> tuple[list[str], int]:
        order: list[str] = []
        live_came = asyncio.Event()

        async def handle(items: Sequence[str], turn: Turn) -> int:
            done = 0
            for item in items:
                order.append(item)
                done += 1
                if item == "bulk-1":
                    live_came.set()
                await asyncio.sleep(0)  # the event loop runs between snapshots
                if turn.give_way():
                    break
            order.append("ack")  # a part's acknowledgements and table writes
            return done

        async def live() -> None:
            await live_came.wait()
            async with gate.live():
                order.append("live")

        bulk = asyncio.create_task(gate.bulk_in_parts([f"bulk-{n}" for n in range(1, 6)], handle))
        await asyncio.gather(live(), bulk)
        return order, bulk.result()

    order, parts = asyncio.run(scenario())
    # Before, the whole bulk batch of five went first; now only the snapshot in hand.
    assert order.index("live") < order.index("bulk-3")
    assert order[: order.index("live") + 1][-2:] == ["ack", "live"]
    assert [o for o in order if o.startswith("bulk")] == [f"bulk-{n}" for n in range(1, 6)]
    assert parts == 2
    assert gate.yielded == 1


def test_bulk_parts_handle_every_item_once_and_in_order_whatever_the_live_batches() -> None:
    rng = random.Random(7)

    async def scenario() -> tuple[list[int], int, int]:
        gate = Precedence()
        handled: list[int] = []
        inside = most = 0

        async def handle(items: Sequence[int], turn: Turn) -> int:
            nonlocal inside, most
            inside += 1
            most = max(most, inside)
            done = 0
            for item in items:
                handled.append(item)
                done += 1
                await asyncio.sleep(rng.choice((0, 0, 0.0005)))
                if turn.give_way():
                    break
            inside -= 1
            return done

        async def lives() -> None:
            nonlocal inside, most
            for _ in range(30):
                await asyncio.sleep(rng.random() / 500)
                async with gate.live():
                    inside += 1
                    most = max(most, inside)
                    await asyncio.sleep(0)
                    inside -= 1

        async def bulks() -> int:
            parts = 0
            for start in range(0, 1_000, 100):
                parts += await gate.bulk_in_parts(list(range(start, start + 100)), handle)
            return parts

        parts, _ = await asyncio.gather(bulks(), lives())
        return handled, parts, most

    handled, parts, most = asyncio.run(scenario())
    assert handled == list(range(1_000))
    assert most == 1, "a live batch and a bulk part overlapped"
    assert parts > 10, "no bulk batch gave way in its middle"


def test_a_part_that_handles_nothing_still_moves_the_batch_on() -> None:
    gate = Precedence()
    calls: list[int] = []

    async def handle(items: Sequence[int], turn: Turn) -> int:
        calls.append(items[0])
        return 0

    assert asyncio.run(gate.bulk_in_parts([1, 2, 3], handle)) == 3
    assert calls == [1, 2, 3]


def test_a_live_batch_processes_while_the_bulk_part_before_it_waits_for_its_acks() -> None:
    """Once a part has sent everything it releases the gate: a live batch of other entities
    is processed and settled without waiting for that part's acknowledgements."""
    gate = Precedence()

    async def scenario() -> list[str]:
        order: list[str] = []
        acks = asyncio.Event()
        sent = asyncio.Event()

        async def handle(items: Sequence[str], turn: Turn) -> int:
            order.extend(items)
            turn.release(items)
            sent.set()
            await acks.wait()  # the broker is slow to acknowledge the bulk part
            order.append("bulk acked")
            return len(items)

        async def live() -> None:
            await sent.wait()
            async with gate.live() as turn:
                assert not turn.in_flight_elsewhere("product:live")
                order.append("live")
                turn.release(["product:live"])
                order.append("live acked")
            acks.set()

        await asyncio.gather(gate.bulk_in_parts(["product:a", "product:b"], handle), live())
        return order

    order = asyncio.run(scenario())
    assert order == ["product:a", "product:b", "live", "live acked", "bulk acked"]
    assert gate.in_flight == 0


def test_an_entity_in_flight_waits_for_the_batch_that_sent_it() -> None:
    """A batch meeting an entity another batch has sent and not yet written waits until
    that one has settled (its state written), and only then goes on."""
    gate = Precedence()

    async def scenario() -> list[str]:
        order: list[str] = []
        sent = asyncio.Event()
        acks = asyncio.Event()

        async def bulk_part(items: Sequence[str], turn: Turn) -> int:
            turn.release(items)
            sent.set()
            await acks.wait()
            order.append("bulk state written")
            return len(items)

        async def live() -> None:
            await sent.wait()
            async with gate.live() as turn:
                assert not turn.in_flight_elsewhere("product:other")
                assert turn.in_flight_elsewhere("product:shared")
                waiting = asyncio.create_task(turn.settled("product:shared"))
                await asyncio.sleep(0.01)
                assert not waiting.done(), "settled before the bulk part wrote its state"
                acks.set()
                await waiting
                order.append("live decides product:shared")
                assert not turn.in_flight_elsewhere("product:shared")
                turn.release(["product:shared"])
                # Its own entity in flight is not another batch's.
                assert not turn.in_flight_elsewhere("product:shared")
                assert gate.in_flight == 1

        await asyncio.gather(gate.bulk_in_parts(["product:shared"], bulk_part), live())
        return order

    assert asyncio.run(scenario()) == ["bulk state written", "live decides product:shared"]
    assert gate.in_flight == 0


def test_a_bulk_part_processes_while_a_live_batch_settles() -> None:
    gate = Precedence()

    async def scenario() -> list[str]:
        order: list[str] = []
        acks = asyncio.Event()

        async def handle(items: Sequence[str], turn: Turn) -> int:
            assert not turn.give_way(), "a live batch that released the gate still waits"
            order.append("bulk")
            acks.set()
            return len(items)

        async def live() -> None:
            async with gate.live() as turn:
                assert not turn.give_way()  # a live batch never gives way
                turn.release(["product:live"])
                assert gate.live_waiting == 0
                order.append("live sent")
                await acks.wait()
                order.append("live acked")

        live_task = asyncio.create_task(live())
        await asyncio.sleep(0)
        await asyncio.gather(gate.bulk_in_parts(["product:bulk"], handle), live_task)
        return order

    assert asyncio.run(scenario()) == ["live sent", "bulk", "live acked"]


def test_a_turn_that_fails_before_releasing_frees_the_gate() -> None:
    gate = Precedence()

    async def scenario() -> bool:
        try:
            async with gate.live():
                raise RuntimeError("a bug in the handler")
        except RuntimeError:
            pass
        async with gate.bulk() as turn:
            return turn.holding

    assert asyncio.run(scenario())
    assert gate.live_waiting == 0
