"""A session's turns in one process: one at a time, in order, and forgotten when done."""

from __future__ import annotations

import asyncio

import pytest

from signoff.store.base import TurnQueue


async def test_a_sessions_turns_take_turns_in_order_and_others_do_not_wait() -> None:
    queue, order = TurnQueue(), []

    async def turn(session_id: str, name: str, hold: asyncio.Event | None = None) -> None:
        async with queue.held(session_id):
            order.append(f"{name} in")
            if hold is not None:
                await hold.wait()
            order.append(f"{name} out")

    release = asyncio.Event()
    first = asyncio.create_task(turn("s1", "a", release))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(turn("s1", name)) for name in ("b", "c")]
    await turn("s2", "other")  # another session's turn runs meanwhile
    await asyncio.sleep(0)
    assert order == ["a in", "other in", "other out"]
    release.set()
    await asyncio.gather(first, *waiting)
    assert order[3:] == ["a out", "b in", "b out", "c in", "c out"]
    assert not queue._locks and not queue._users  # forgotten


async def test_a_turn_cancelled_while_it_waits_leaves_the_queue() -> None:
    queue = TurnQueue()
    release = asyncio.Event()

    async def hold() -> None:
        async with queue.held("s1"):
            await release.wait()

    async def wait_then_run() -> None:
        async with queue.held("s1"):
            pytest.fail("a cancelled turn must not run")

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(wait_then_run())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    assert not queue._locks and not queue._users  # forgotten
    async with queue.held("s1"):  # and the session can take a turn again
        assert list(queue._locks) == ["s1"]
