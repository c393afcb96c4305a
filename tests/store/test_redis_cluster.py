"""What only a Redis Cluster store has to show: a session's keys share one slot, and a
bad or unreachable cluster is reported by name. (The contract tests run on it too.)"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest

from signoff.core.cards import Status, new_card_id
from signoff.store import SessionRecord, Store, StoreError, open_store
from tests.services import cluster_store_url, redis_client, redis_cluster_prefix
from tests.store.test_store_contract import card
from tests.support import free_port


@pytest.fixture
async def cluster_url(redis_cluster: str) -> AsyncIterator[str]:
    """A store URL on the test run's cluster, with a fresh key prefix."""
    async with redis_cluster_prefix(redis_cluster) as prefix:
        yield cluster_store_url(redis_cluster, prefix)


async def opened(url: str) -> Store:
    store = open_store(url)
    await store.start()
    return store


async def test_every_key_of_a_session_and_its_cards_is_in_one_slot(cluster_url: str) -> None:
    store = await opened(cluster_url)
    client = redis_client(cluster_url)
    prefix = cluster_url.partition("prefix=")[2]
    try:
        now = time.time()
        for sid in ("s1", "s2"):
            await store.create_session(SessionRecord(sid, "u1", "demo", "conv1", now, now + 60))
            await store.touch_session(sid, ttl=120, now=now)
            store.subscribe(sid, lambda news: None)
            await asyncio.sleep(0.1)  # followed here: the session's set of listeners
            async with store.turn(sid, 5, "c-1"):
                await store.append_frame(sid, {"type": "x"})
                await store.save_conversation(sid, [{"role": "user", "content": "hi"}])
            card_ids = [new_card_id(sid) for _ in range(3)]
            for card_id in card_ids:
                await store.add_card(card(sid=sid, card_id=card_id, timeout_at=now + 30))
            await store.transition(card_ids[0], {Status.PENDING}, Status.APPROVED, now)
            async with store.turn(sid, ttl=5):
                keys = [
                    key
                    async for key in client.scan_iter(match=f"{prefix}:*")
                    if key.endswith(f":{sid}") or key.endswith(tuple(card_ids))
                ]
            # session, seq, frames, client_ids, conversation, cards, listeners, 3 cards,
            # turn lock
            assert len(keys) == 11, keys
            slots = {await client.cluster_keyslot(key) for key in keys}
            assert len(slots) == 1, keys
    finally:
        await store.close()
        await client.aclose()


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis-cluster://", "seed node '' is not host:port"),
        ("redis-cluster://127.0.0.1", "seed node '127.0.0.1' is not host:port"),
        ("redis-cluster://127.0.0.1:7000,127.0.0.1:x", "seed node '127.0.0.1:x'"),
        ("redis-cluster://127.0.0.1:7000/0?db=1", "unknown option db"),
        ("redis-cluster://127.0.0.1:7000?prefix=a b", "prefix"),
        ("redis-cluster://127.0.0.1:7000?max_frames=none", "max_frames"),
    ],
)
def test_bad_cluster_urls_are_refused_by_name(url: str, names: str) -> None:
    with pytest.raises(StoreError, match=f"^SIGNOFF_STORE: .*{re.escape(names)}"):
        open_store(url)


async def test_an_unreachable_cluster_stops_start_up_with_a_clear_error() -> None:
    store = open_store(f"redis-cluster://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match="SIGNOFF_STORE: cannot reach Redis"):
        await store.start()
    await store.close()


async def test_news_come_through_the_next_node_when_the_first_does_not_answer(
    cluster_url: str,
) -> None:
    dead_first = cluster_url.replace(
        "redis-cluster://", f"redis-cluster://127.0.0.1:{free_port()},"
    )
    one, two = await opened(dead_first), await opened(cluster_url)
    try:
        await two.create_session(
            SessionRecord("s1", "u1", "demo", "conv1", time.time(), time.time() + 60)
        )
        heard: list[str] = []
        one.subscribe("s1", lambda news: heard.append(news.event))
        await asyncio.sleep(0.1)  # the subscription takes hold
        heard.clear()
        await two.append_frame("s1", {"type": "x"})
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert heard == ["frames"]
    finally:
        await one.close()
        await two.close()
