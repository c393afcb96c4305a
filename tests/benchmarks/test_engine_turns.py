"""The engine benchmark, run tiny: what it counts is round trips to Redis, which the turn
step keeps to one to begin a turn and one to end it."""

from __future__ import annotations

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
