"""What only the Redis store has to show: several processes' stores on one Redis, key
hygiene, and what happens when Redis goes away and comes back."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from signoff.core.cards import Status
from signoff.store import (
    ClaimOutcome,
    News,
    SessionRecord,
    Store,
    StoreError,
    StoreUnavailable,
    open_store,
)
from signoff.store.redis import KEY_GRACE, RedisStore
from signoff.store.redis_turns import WRITE_BEHIND
from signoff.store.shared_connection import Arg
from tests.services import (
    cluster_store_url,
    private_redis,
    redis_client,
    redis_cluster_prefix,
    redis_prefix,
    redis_store_url,
)
from tests.store.test_store_contract import NOW, card, cid, session
from tests.support import free_port


async def opened(url: str) -> Store:
    store = open_store(url)
    await store.start()
    return store


async def test_a_listener_on_one_instance_hears_frames_written_by_another(prefix: str) -> None:
    one, two = await opened(redis_store_url(prefix)), await opened(redis_store_url(prefix))
    try:
        await one.create_session(session())
        heard: list[str] = []
        two.subscribe("s1", lambda news: heard.append(news.event))
        await asyncio.sleep(0.1)  # the subscription takes hold
        heard.clear()
        await one.append_frame("s1", {"type": "x"})
        seq = await one.last_seq("s1")
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert heard == ["frames"]
        assert [s for s, _ in await two.frames_after("s1", 0)] == [seq]
        await one.end_session("s1", "expired")
        await asyncio.sleep(0.1)
        assert heard == ["frames", "end"]
    finally:
        await one.close()
        await two.close()


async def test_claims_racing_on_two_instances_let_exactly_one_win(prefix: str) -> None:
    stores = [await opened(redis_store_url(prefix)) for _ in range(2)]
    try:
        await stores[0].create_session(session())
        await stores[0].add_card(card())
        results = await asyncio.gather(
            *(
                stores[i % 2].transition(
                    cid("card1"), {Status.PENDING}, Status.APPROVED, NOW, check_deadline=True
                )
                for i in range(20)
            )
        )
        assert [r.outcome for r in results].count(ClaimOutcome.OK) == 1
    finally:
        for store in stores:
            await store.close()


async def test_an_outbox_lane_is_one_for_every_instance(prefix: str) -> None:
    one, two = await opened(redis_store_url(prefix)), await opened(redis_store_url(prefix))
    try:
        assert one.outbox_survives
        await one.outbox_append("hooks:0", "a", cap=10)
        assert await one.outbox_lease("hooks:0", "one", ttl=30)
        assert await two.outbox_head("hooks:0") == "a"
        assert not await two.outbox_lease("hooks:0", "two", ttl=30)
        await two.outbox_append("hooks:0", "b", cap=10)
        assert await one.outbox_done("hooks:0", "one", "a")
        assert await two.outbox_entries("hooks:0") == ["b"]
    finally:
        await one.close()
        await two.close()


async def test_every_session_key_expires_and_ending_leaves_nothing(prefix: str, raw: Redis) -> None:
    store = await opened(redis_store_url(prefix))
    try:
        # Real time here: Redis counts key lifetimes in its own clock.
        now = time.time()
        await store.create_session(SessionRecord("s1", "u1", "demo", "conv1", now, now + 60))
        await store.touch_session("s1", ttl=120, now=now)
        await store.append_frame("s1", {"type": "x"})
        async with store.turn("s1", 5, "c-1"):
            await store.save_conversation("s1", [{"role": "user", "content": "hi"}])
        await store.add_card(card(timeout_at=now + 30))
        per_session = [k async for k in raw.scan_iter(f"{prefix}:*") if not _index(k, prefix)]
        assert len(per_session) == 7  # session, seq, frames, client_ids, conv, cards, card
        for key in per_session:
            lifetime = await raw.pttl(key) / 1000
            assert 120 < lifetime <= 120 + KEY_GRACE, key
        await store.end_session("s1", "expired")
        # Only the instance's own heartbeat is left, and it lapses by itself.
        assert [k async for k in raw.scan_iter(f"{prefix}:*")] == [
            f"{prefix}:alive:{store.instance}"
        ]
        assert 0 < await raw.pttl(f"{prefix}:alive:{store.instance}") <= 5000
    finally:
        await store.close()


def _index(key: str, prefix: str) -> bool:
    """Keys that are not a session's: the indexes, and the instance's heartbeat."""
    return key in {f"{prefix}:sessions", f"{prefix}:due"} or key.startswith(f"{prefix}:alive:")


async def test_deployments_with_different_prefixes_share_nothing(prefix: str) -> None:
    async with redis_prefix() as other:
        one, two = await opened(redis_store_url(prefix)), await opened(redis_store_url(other))
        try:
            await one.create_session(session())
            assert await two.get_session("s1", NOW) is None
            assert await two.expired_sessions(NOW + 1000) == []
        finally:
            await one.close()
            await two.close()


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis://127.0.0.1:6379/0?prefix=bad prefix", "prefix"),
        ("redis://127.0.0.1:6379/0?max_frames=0", "max_frames"),
        ("redis://127.0.0.1:6379/0?max_frames=lots", "max_frames"),
        ("redis://127.0.0.1:notaport/0", "Redis URL"),
        ("mysql://127.0.0.1/x", "unknown store URL"),
    ],
)
def test_bad_store_urls_are_refused_by_name(url: str, names: str) -> None:
    with pytest.raises(StoreError, match=f"SIGNOFF_STORE: .*{names}"):
        open_store(url)


async def test_an_unreachable_redis_stops_start_up_with_a_clear_error() -> None:
    store = open_store(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreError, match="SIGNOFF_STORE: cannot reach Redis"):
        await store.start()
    await store.close()


async def test_calls_fail_clearly_while_redis_is_down_and_work_again_after(
    tmp_path: Any,
) -> None:
    async with private_redis(str(tmp_path), free_port()) as redis_server:
        store = await opened(redis_server.url)
        assert isinstance(store, RedisStore)
        try:
            await store.create_session(session())
            await store.add_card(card())
            heard: list[str] = []
            store.subscribe("s1", lambda news: heard.append(news.event))
            await redis_server.stop()
            with pytest.raises(StoreUnavailable, match="unreachable"):
                await store.transition(cid("card1"), {Status.PENDING}, Status.APPROVED, NOW)
            with pytest.raises(StoreUnavailable):
                await store.ping()
            heard.clear()
            await redis_server.start()
            # The data was kept (append-only file); the claim works once, as before.
            moved = await store.transition(cid("card1"), {Status.PENDING}, Status.APPROVED, NOW)
            assert moved.outcome is ClaimOutcome.OK
            again = await store.transition(cid("card1"), {Status.PENDING}, Status.APPROVED, NOW)
            assert again.outcome is ClaimOutcome.CONFLICT
            # Listeners are woken once the news connection is back, to catch up.
            for _ in range(300):
                if heard:
                    break
                await asyncio.sleep(0.01)
            assert "frames" in heard
        finally:
            await store.close()


@pytest.fixture(params=["redis", "redis-cluster"])
async def any_redis_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A store URL with a fresh prefix on one Redis, then on the Redis Cluster."""
    if request.param == "redis":
        async with redis_prefix() as prefix:
            yield redis_store_url(prefix)
        return
    cluster_url = request.getfixturevalue("redis_cluster")
    async with redis_cluster_prefix(cluster_url) as prefix:
        yield cluster_store_url(cluster_url, prefix)


async def test_index_entries_are_hints_that_readers_check_and_put_right(
    any_redis_url: str,
) -> None:
    """The global indexes are written beside the scripts, so one may be left behind the
    truth (a late write, a crash between the two); readers go by the session or card."""
    store = await opened(any_redis_url)
    client = redis_client(any_redis_url)
    prefix = any_redis_url.partition("prefix=")[2]
    try:
        await store.create_session(session(expires_at=NOW + 60))
        await store.add_card(card(timeout_at=NOW + 30))
        await store.add_card(card("done", status=Status.DONE))
        gone = cid("gone")
        # Entries earlier than the truth, and entries for what is no longer there.
        await client.zadd(f"{prefix}:sessions", {"s1": NOW, "ended": NOW})
        await client.zadd(f"{prefix}:due", {cid("card1"): NOW, cid("done"): NOW, gone: NOW})
        await client.zadd(f"{prefix}:waiting", {cid("card1"): NOW, gone: NOW})
        assert await store.expired_sessions(NOW + 1) == []
        assert await store.due_cards(NOW + 1) == []
        assert await store.waiting_cards(10) == []
        assert await client.zrange(f"{prefix}:sessions", 0, -1, withscores=True) == [
            ("s1", NOW + 60)
        ]
        assert await client.zrange(f"{prefix}:due", 0, -1, withscores=True) == [
            (cid("card1"), NOW + 30)
        ]
        assert await client.zrange(f"{prefix}:waiting", 0, -1) == []
        # And the card is still due at its own deadline.
        assert [c.card_id for c in await store.due_cards(NOW + 30)] == [cid("card1")]
    finally:
        await store.close()
        await client.aclose()


async def test_a_card_id_not_made_for_its_session_is_refused(prefix: str) -> None:
    store = await opened(redis_store_url(prefix))
    try:
        await store.create_session(session())
        with pytest.raises(ValueError, match="not made for its session"):
            await store.add_card(card(card_id="card_1"))
        with pytest.raises(ValueError, match="not made for its session"):
            await store.add_card(dataclasses.replace(card(sid="s2"), session_id="s1"))
        # Such an id names no card: looking one up finds nothing.
        assert await store.get_card("card_1") is None
        missing = await store.transition("card_1", {Status.PENDING}, Status.APPROVED, NOW)
        assert missing.outcome is ClaimOutcome.MISSING
    finally:
        await store.close()


async def test_cards_added_while_the_session_is_touched_all_slide_with_it(
    any_redis_url: str,
) -> None:
    """Touching reaches each card of the session, as the script was told them: a card
    added meanwhile makes it run again with the new list, so none is left behind."""
    store = await opened(any_redis_url)
    client = redis_client(any_redis_url)
    prefix = any_redis_url.partition("prefix=")[2]
    try:
        now = time.time()
        await store.create_session(SessionRecord("s1", "u1", "demo", "conv1", now, now + 60))
        await asyncio.gather(
            *(store.add_card(card(f"c{n}", timeout_at=now + 30)) for n in range(10)),
            *(store.touch_session("s1", ttl=600 + 10 * n, now=now) for n in range(10)),
        )
        assert len(await store.session_cards("s1")) == 10
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*:s1")]
        keys += [key async for key in client.scan_iter(match=f"{prefix}:card:*")]
        lifetimes = [await client.pttl(key) / 1000 for key in keys]
        assert len(lifetimes) == 12  # session, cards list, ten cards
        # Every key slid to the last expiry; one a touch missed would be 10 s behind.
        assert max(lifetimes) - min(lifetimes) < 5, lifetimes
        assert min(lifetimes) > 690 + KEY_GRACE - 5, lifetimes
    finally:
        await store.close()
        await client.aclose()


async def test_a_card_is_kept_after_the_conversation_that_proposed_it(prefix: str) -> None:
    """Another instance deciding the card resumes from that conversation."""
    one, two = await opened(redis_store_url(prefix)), await opened(redis_store_url(prefix))
    try:
        await one.create_session(session())
        async with one.turn("s1", 5) as turn:
            assert turn is not None
            await one.save_conversation("s1", [{"role": "assistant", "content": "proposed"}])
            await one.add_card(card(timeout_at=time.time() + 300))
            assert await two.load_conversation("s1") == [
                {"role": "assistant", "content": "proposed"}
            ]
    finally:
        await one.close()
        await two.close()


async def test_a_quick_turn_is_written_in_one_step_when_it_ends(prefix: str) -> None:
    store = await opened(redis_store_url(prefix))
    try:
        await store.create_session(session())
        heard: list[News] = []
        store.subscribe("s1", heard.append)
        async with store.turn("s1", 5, "c-1") as turn:
            assert turn is not None
            for kind in ("message", "message.start", "message.end"):
                await store.append_frame("s1", {"type": kind})
            await store.save_conversation("s1", [{"role": "user", "content": "hi"}])
            assert await store.last_seq("s1") == 0  # held back while the turn runs
        # (A news without frames says the subscription took hold: read what came before.)
        assert [[seq for seq, _ in news.frames] for news in heard if news.frames] == [[1, 2, 3]]
        assert await store.load_conversation("s1") == [{"role": "user", "content": "hi"}]
    finally:
        await store.close()


async def test_frames_are_announced_only_to_instances_that_follow_the_session(
    prefix: str, raw: Redis
) -> None:
    store = await opened(redis_store_url(prefix))
    outsider = raw.pubsub()
    try:
        await store.create_session(session())
        store.subscribe("s1", lambda news: None)  # followed here, on the writing instance
        await asyncio.sleep(0.1)
        await outsider.subscribe(f"{prefix}:news:s1")
        await outsider.get_message(timeout=0.2)  # the subscription's confirmation
        await store.append_frame("s1", {"type": "x"})
        assert await outsider.get_message(timeout=0.3) is None
    finally:
        await outsider.aclose()
        await store.close()


async def test_what_a_failed_catch_up_held_is_written_with_the_turns_end(prefix: str) -> None:
    """Redis drops the write that must precede a card: the card is refused as unavailable,
    and the frames and conversation the turn held are still written when it ends."""
    store = await opened(redis_store_url(prefix))
    assert isinstance(store, RedisStore)
    write = store._turns._write
    failures = [redis_errors.ConnectionError("dropped")]

    async def flaky_write(session_id: str, texts: Sequence[str], *args: Any) -> bool:
        if failures and texts:
            raise failures.pop()
        return await write(session_id, texts, *args)

    store._turns._write = flaky_write  # type: ignore[method-assign]
    try:
        await store.create_session(session())
        async with store.turn("s1", 5) as turn:
            assert turn is not None
            await store.append_frame("s1", {"type": "message", "n": 1})
            await store.save_conversation("s1", [{"role": "user", "content": "hi"}])
            with pytest.raises(StoreUnavailable):
                await store.add_card(card(timeout_at=time.time() + 300))
        frames = [json.loads(text) for _, text in await store.frames_after("s1", 0)]
        assert [f.get("n") for f in frames] == [1]
        assert await store.load_conversation("s1") == [{"role": "user", "content": "hi"}]
    finally:
        await store.close()


async def test_a_turn_ending_while_its_frames_are_written_writes_each_frame_once(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy server: the turn ends while a write behind is under way, and the next
    write behind comes due before the turn's end resumes. Each frame is written once,
    and nothing of the turn is written after its end."""
    monkeypatch.setattr("signoff.store.redis_turns.WRITE_GAP", 0.0)
    store = await opened(redis_store_url(prefix))
    assert isinstance(store, RedisStore)
    turns = store._turns  # its writes go through the turns' own ``write``
    write = turns._write
    written: list[str] = []

    async def slow_write(session_id: str, texts: Sequence[str] = (), *args: Any) -> bool:
        written.extend(texts)
        if texts:
            await asyncio.sleep(0.05)
        return await write(session_id, texts, *args)

    turns._write = slow_write
    try:
        await store.create_session(session())
        for n in range(5):
            async with store.turn("s1", 5) as turn:
                assert turn is not None
                await store.append_frame("s1", {"type": "message.start", "n": n})
                await asyncio.sleep(WRITE_BEHIND + 0.02)  # written behind, slowly
                await store.append_frame("s1", {"type": "message.end", "n": n})
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        frames = [json.loads(text) for _, text in await store.frames_after("s1", 0)]
        assert [(f["type"], f["n"]) for f in frames] == [
            (kind, n) for n in range(5) for kind in ("message.start", "message.end")
        ]
        assert len(written) == 10
    finally:
        await store.close()


async def test_a_turn_that_waits_shows_its_frames_meanwhile(prefix: str) -> None:
    """A turn waiting on a slow model: its visitor sees the echo and the first words."""
    one, two = await opened(redis_store_url(prefix)), await opened(redis_store_url(prefix))
    try:
        await one.create_session(session())
        async with one.turn("s1", 5, "c-1") as turn:
            assert turn is not None
            await one.append_frames("s1", [{"type": "message"}, {"type": "message.start"}])
            await asyncio.sleep(WRITE_BEHIND + 0.2)  # the model thinks
            assert [s for s, _ in await two.frames_after("s1", 0)] == [1, 2]
            await one.append_frame("s1", {"type": "message.end"})
        assert [s for s, _ in await two.frames_after("s1", 0)] == [1, 2, 3]
    finally:
        await one.close()
        await two.close()


async def test_turns_of_a_session_on_one_instance_wait_in_the_process(prefix: str) -> None:
    """A turn waiting for another on the same instance does not ask Redis over and over:
    a thousand sessions doing so spent a server on asking."""
    store = await opened(redis_store_url(prefix))
    assert isinstance(store, RedisStore)
    begun = 0
    run = store._run

    async def counted(script: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        nonlocal begun
        begun += script == "begin"
        return await run(script, keys, args)

    store._run = counted  # type: ignore[method-assign]
    order: list[int] = []

    async def hold(n: int) -> None:
        async with store.turn("s1", 5):
            order.append(n)
            await asyncio.sleep(0.2)

    try:
        await store.create_session(session())
        await asyncio.gather(hold(1), hold(2), hold(3))
        assert order == [1, 2, 3]
        assert begun == 3
    finally:
        await store.close()


async def hung_until_cancelled(*args: Any, **options: Any) -> Any:
    """A Redis call that hangs, and turns its cancellation into a connection error, as
    redis-py can when the cancellation lands mid-command."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        raise redis_errors.ConnectionError("the connection was closed") from None


async def test_closing_ends_the_heartbeat_and_news_even_if_redis_py_swallows_the_cancel(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("signoff.store.redis.HEARTBEAT", 0.01)
    store = await opened(redis_store_url(prefix))
    assert isinstance(store, RedisStore)
    monkeypatch.setattr(store, "_beat", hung_until_cancelled)
    assert store._news._pubsub is not None
    monkeypatch.setattr(store._news._pubsub, "get_message", hung_until_cancelled)
    await asyncio.sleep(1.2)  # the listener's wait for news has come round to the hang too
    async with asyncio.timeout(5):
        await store.close()
