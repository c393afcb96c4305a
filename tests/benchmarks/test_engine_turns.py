"""The engine benchmark, run tiny: what it counts is round trips to Redis, which the turn
step keeps to one to begin a turn and one to end it."""

from __future__ import annotations

import pytest

from benchmarks.engine_turns import measure
from tests.services import redis_prefix, redis_store_url


async def test_a_message_turn_is_two_round_trips_to_redis() -> None:
    async with redis_prefix() as prefix:
        figures = await measure(redis_store_url(prefix), "message", sessions=5, turns=3)
    assert figures["commands"] == {"begin": 1.0, "write": 1.0}
    assert figures["cpu_us"] > 0


async def test_a_card_round_trip_is_counted_on_both_stores() -> None:
    memory = await measure("memory://", "card", sessions=2, turns=2)
    assert memory["commands"] == {}
    async with redis_prefix() as prefix:
        redis = await measure(redis_store_url(prefix), "card", sessions=2, turns=2)
    # Two turns (the message, the decision), each begun and ended in one script.
    assert redis["commands"]["begin"] == 2.0
    assert redis["commands"]["write"] >= 2.0
    # The claim, running, and done with the one call's result: not a step between them
    # for the result alone.
    assert redis["commands"]["transition"] == 3.0


@pytest.mark.parametrize("kind", ["message", "stream", "card"])
async def test_turns_leave_no_reference_cycles(kind: str) -> None:
    """Every object of a turn is freed by its reference count: the cycle collector, which
    stops every socket while it runs, finds nothing of ours (a closure that calls itself,
    a timer kept by what it holds, were each one on every turn). Enough turns that the
    event loop drops its cancelled timers (it does past a hundred)."""
    memory = await measure("memory://", kind, sessions=10, turns=12)
    assert memory["cycles"] == 0
    async with redis_prefix() as prefix:
        redis = await measure(redis_store_url(prefix), kind, sessions=10, turns=12)
    assert redis["cycles"] == 0
