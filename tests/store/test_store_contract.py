"""What every store must do, run against each store implementation.

The engine relies on these atomic steps alone for exactly-once and for
ordering, so each one is pinned down here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlencode

import pytest

from signoff.core.cards import Card, Status, card_id_for
from signoff.store import ClaimOutcome, SessionRecord, Store, open_store
from tests.services import (
    cluster_store_url,
    redis_cluster_prefix,
    redis_prefix,
    redis_store_url,
)

NOW = 1_000_000.0

StoreFactory = Callable[..., Any]


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Opens stores of one kind; for Redis, all on one fresh key prefix (one deployment)."""
    async with AsyncExitStack() as stack:
        if request.param == "redis":
            prefix = await stack.enter_async_context(redis_prefix())
        elif request.param == "redis-cluster":
            cluster_url = request.getfixturevalue("redis_cluster")
            prefix = await stack.enter_async_context(redis_cluster_prefix(cluster_url))

        async def make(**options: Any) -> Store:
            if request.param == "redis":
                store = open_store(redis_store_url(prefix, **options))
            elif request.param == "redis-cluster":
                store = open_store(cluster_store_url(cluster_url, prefix, **options))
            else:
                store = open_store("memory://?" + urlencode(options))
            await store.start()
            stack.push_async_callback(store.close)
            return store

        yield make


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    return await make_store()


def session(sid: str = "s1", expires_at: float = NOW + 60) -> SessionRecord:
    return SessionRecord(sid, "u1", "demo", "conv1", NOW, expires_at)


def cid(name: str, sid: str = "s1") -> str:
    """The id of the card of session ``sid`` that a test calls ``name``."""
    return card_id_for(sid, name)


def name_of(card: Card) -> str:
    """What the test called the card: its id without the session's tag."""
    return card.card_id.removeprefix(card_id_for(card.session_id, ""))


def card(card_name: str = "card1", sid: str = "s1", **changes: Any) -> Card:
    sid = changes.pop("session_id", sid)
    values: dict[str, Any] = {
        "card_id": cid(card_name, sid),
        "session_id": sid,
        "conversation_id": "conv1",
        "user_id": "u1",
        "site": "demo",
        "kind": "destructive",
        "approver": "user",
        "levels": [],
        "title": "Wipe",
        "text": "Wipe disk?",
        "calls": [{"action": "wipe", "args": {"target": "disk"}}],
        "effects": ["Wipe disk?"],
        "titles": ["Wipe"],
        "tool_call_ids": ["t1"],
        "args_hash": "sha256:" + "0" * 64,
        "created_at": NOW,
        "timeout_at": NOW + 30,
    }
    values.update(changes)
    return Card(**values)


async def test_sessions_slide_expire_and_end(store: Store) -> None:
    await store.create_session(session())
    assert (await store.get_session("s1", NOW)).user_id == "u1"
    touched = await store.touch_session("s1", ttl=120, now=NOW + 30)
    assert touched is not None and touched.expires_at == NOW + 150
    assert await store.get_session("s1", NOW + 149) is not None
    assert await store.get_session("s1", NOW + 150) is None
    assert await store.touch_session("s1", ttl=120, now=NOW + 151) is None
    assert await store.expired_sessions(NOW + 151) == ["s1"]
    await store.end_session("s1", "expired")
    assert await store.expired_sessions(NOW + 151) == []
    assert await store.get_session("s1", NOW) is None


async def test_frames_are_numbered_in_order_and_replayed_after_a_seq(store: Store) -> None:
    await store.create_session(session())
    for n in range(5):
        await store.append_frame("s1", {"type": "message", "n": n})
    assert await store.last_seq("s1") == 5
    after = await store.frames_after("s1", 2)
    assert [seq for seq, _ in after] == [3, 4, 5]
    assert json.loads(after[0][1]) == {"type": "message", "n": 2, "seq": 3}
    assert await store.frames_after("s1", 5) == []


async def test_concurrent_appends_get_distinct_consecutive_seqs(store: Store) -> None:
    await store.create_session(session())
    await asyncio.gather(*(store.append_frame("s1", {"type": "x", "n": n}) for n in range(50)))
    kept = await store.frames_after("s1", 0)
    assert [seq for seq, _ in kept] == list(range(1, 51))
    assert sorted(json.loads(text)["n"] for _, text in kept) == list(range(50))


async def first_use(store: Store, session_id: str, client_id: str) -> bool:
    """Whether a turn for ``client_id`` is taken: its first use."""
    async with store.turn(session_id, 5, client_id) as turn:
        return turn is not None


async def test_a_client_id_is_new_only_once_per_session(store: Store) -> None:
    await store.create_session(session())
    await store.create_session(session("s2"))
    assert await first_use(store, "s1", "c-1") is True
    assert await first_use(store, "s1", "c-1") is False
    assert await first_use(store, "s2", "c-1") is True
    assert await first_use(store, "s1", "c-2") is True


async def test_a_turn_begins_with_the_conversation_and_open_cards(store: Store) -> None:
    await store.create_session(session())
    await store.save_conversation("s1", [{"role": "user", "content": "hi"}])
    await store.add_card(card("done1", status=Status.DONE))
    await store.add_card(card("open1", timeout_at=NOW + 300))
    async with store.turn("s1", 5) as turn:
        assert turn is not None
        assert turn.conversation == [{"role": "user", "content": "hi"}]
        assert [c.card_id for c in turn.open_cards] == [cid("open1")]


async def test_a_turn_begins_with_the_conversation_as_it_was_however_late_it_reads_it(
    store: Store,
) -> None:
    """A turn's conversation is decoded only when read: read after the turn saved another,
    it is still the one the turn began with."""
    await store.create_session(session())
    await store.save_conversation("s1", [{"role": "user", "content": "hi"}])
    async with store.turn("s1", 5) as turn:
        assert turn is not None
        await store.save_conversation("s1", [{"role": "user", "content": "later"}])
        assert turn.conversation == [{"role": "user", "content": "hi"}]
        assert turn.conversation is turn.conversation  # decoded once
    assert await store.load_conversation("s1") == [{"role": "user", "content": "later"}]


async def test_what_a_turn_writes_is_kept_in_order_when_it_ends(store: Store) -> None:
    await store.create_session(session())
    await store.append_frame("s1", {"type": "before"})
    heard: list[int] = []
    store.subscribe("s1", lambda news: heard.extend(seq for seq, _ in news.frames))
    async with store.turn("s1", 5, "c-1") as turn:
        assert turn is not None
        await store.append_frame("s1", {"type": "a"})
        conversation = await store.load_conversation("s1")
        conversation.append({"role": "user", "content": "hi"})
        await store.save_conversation("s1", conversation)
        assert await store.load_conversation("s1") == conversation  # the turn's own view
        await asyncio.sleep(0.05)  # a turn that waits shows its frames meanwhile
        await store.append_frames("s1", [{"type": "b"}, {"type": "c"}])
    kept = [json.loads(text)["type"] for _, text in await store.frames_after("s1", 0)]
    assert kept == ["before", "a", "b", "c"]
    assert heard == [2, 3, 4]
    assert await store.load_conversation("s1") == [{"role": "user", "content": "hi"}]


async def test_conversation_round_trips_and_is_not_shared(store: Store) -> None:
    await store.create_session(session())
    conversation = [{"role": "user", "content": "hi"}]
    await store.save_conversation("s1", conversation)
    conversation.append({"role": "assistant", "content": "changed after saving"})
    loaded = await store.load_conversation("s1")
    assert loaded == [{"role": "user", "content": "hi"}]
    loaded.append({"role": "user", "content": "changed after loading"})
    assert len(await store.load_conversation("s1")) == 1


async def test_a_message_changed_after_saving_is_kept_as_saved(store: Store) -> None:
    """However the store keeps what it already holds, a save keeps its new messages as they
    were then: on a first save, on an append and on a conversation rebuilt from scratch."""
    await store.create_session(session())
    first = {"role": "user", "content": "hi"}
    await store.save_conversation("s1", [first])
    conversation = await store.load_conversation("s1")
    call = {"id": "c1", "type": "function", "function": {"name": "peek", "arguments": "{}"}}
    added = {"role": "assistant", "content": None, "tool_calls": [call]}
    await store.save_conversation("s1", [*conversation, added])
    rebuilt = [{"role": "user", "content": "again"}]
    first["content"] = added["tool_calls"][0]["id"] = "changed"
    assert await store.load_conversation("s1") == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [{**call, "id": "c1"}]},
    ]
    await store.save_conversation("s1", rebuilt)
    rebuilt[0]["content"] = "changed"
    assert await store.load_conversation("s1") == [{"role": "user", "content": "again"}]


async def test_a_conversation_comes_back_as_json_would_give_it(store: Store) -> None:
    """A bot may hand over its own str subclass (an id, a name): every store keeps the
    conversation as JSON would, so each gives back the same plain values."""

    class Name(str):
        pass

    await store.create_session(session())
    call = {"id": Name("call_1"), "function": {"name": Name("refund"), "arguments": "{}"}}
    await store.save_conversation("s1", [{"role": "assistant", "tool_calls": [call]}])
    [loaded] = await store.load_conversation("s1")
    assert loaded == {
        "role": "assistant",
        "tool_calls": [{"id": "call_1", "function": {"name": "refund", "arguments": "{}"}}],
    }
    assert type(loaded["tool_calls"][0]["id"]) is str


async def test_of_many_racing_claims_exactly_one_wins(store: Store) -> None:
    await store.create_session(session())
    await store.add_card(card())
    results = await asyncio.gather(
        *(
            store.transition(
                cid("card1"),
                {Status.PENDING},
                Status.APPROVED,
                NOW,
                {"decided_by": f"tab{i}"},
                check_deadline=True,
            )
            for i in range(20)
        )
    )
    outcomes = [r.outcome for r in results]
    assert outcomes.count(ClaimOutcome.OK) == 1
    assert outcomes.count(ClaimOutcome.CONFLICT) == 19
    winner = next(r.card for r in results if r.outcome is ClaimOutcome.OK)
    stored = await store.get_card(cid("card1"))
    assert (stored.status, stored.decided_by) == (Status.APPROVED, winner.decided_by)


async def test_a_claim_past_the_deadline_expires_the_card_once(store: Store) -> None:
    await store.create_session(session(expires_at=NOW + 10))
    await store.add_card(card(timeout_at=NOW + 30))
    # The session's expiry (NOW + 10) comes before the card's own timeout.
    late = await store.transition(
        cid("card1"), {Status.PENDING}, Status.APPROVED, NOW + 11, check_deadline=True
    )
    assert (late.outcome, late.card.status) == (ClaimOutcome.EXPIRED, Status.EXPIRED)
    again = await store.transition(
        cid("card1"), {Status.PENDING}, Status.APPROVED, NOW + 12, check_deadline=True
    )
    assert again.outcome is ClaimOutcome.CONFLICT


async def test_a_claim_past_the_cards_own_timeout_expires_it(store: Store) -> None:
    await store.create_session(session(expires_at=NOW + 600))
    await store.add_card(card(timeout_at=NOW + 30))
    on_time = await store.transition(
        cid("card1"), {Status.PENDING}, Status.CANCELLED, NOW + 29, check_deadline=True
    )
    assert on_time.outcome is ClaimOutcome.OK
    await store.add_card(card("card2", timeout_at=NOW + 30))
    late = await store.transition(
        cid("card2"), {Status.PENDING}, Status.APPROVED, NOW + 30, check_deadline=True
    )
    assert late.outcome is ClaimOutcome.EXPIRED


async def test_transitions_report_missing_cards_and_refuse_impossible_moves(store: Store) -> None:
    await store.create_session(session())
    missing = await store.transition(cid("nope"), {Status.PENDING}, Status.APPROVED, NOW)
    assert (missing.outcome, missing.card) == (ClaimOutcome.MISSING, None)
    await store.add_card(card())
    with pytest.raises(ValueError, match="cannot move from pending to done"):
        await store.transition(cid("card1"), {Status.PENDING}, Status.DONE, NOW)


async def test_open_and_due_cards(store: Store) -> None:
    await store.create_session(session(expires_at=NOW + 600))
    await store.add_card(card("open", timeout_at=NOW + 30))
    await store.add_card(card("late", timeout_at=NOW + 5))
    await store.add_card(card("claimed", status=Status.RUNNING, lease_until=NOW + 5))
    await store.add_card(card("leased", status=Status.RUNNING, lease_until=NOW + 50))
    await store.add_card(card("done", status=Status.DONE))
    assert sorted(name_of(c) for c in await store.open_cards("s1")) == ["late", "open"]
    due = sorted(name_of(c) for c in await store.due_cards(NOW + 10))
    assert due == ["claimed", "late"]


async def test_ending_a_session_drops_its_state_and_tells_listeners(store: Store) -> None:
    await store.create_session(session())
    await store.add_card(card())
    await store.append_frame("s1", {"type": "x"})
    heard: list[str] = []
    store.subscribe("s1", lambda news: heard.append(news.event))
    await store.append_frame("s1", {"type": "y"})
    await store.end_session("s1", "expired")
    await asyncio.sleep(0.05)
    # A listener may be woken more often than needed, never less, and hears the end once.
    assert "frames" in heard[: heard.index("end")] and heard.count("end") == 1
    assert await store.get_card(cid("card1")) is None
    assert await store.frames_after("s1", 0) == []
    assert await store.load_conversation("s1") == []
    # Late writes for an ended session keep nothing.
    await store.append_frame("s1", {"type": "late"})
    await store.save_conversation("s1", [{"role": "user", "content": "late"}])
    assert await store.frames_after("s1", 0) == []
    assert await store.load_conversation("s1") == []


async def test_unsubscribed_listeners_hear_nothing(store: Store) -> None:
    await store.create_session(session())
    heard: list[str] = []
    unsubscribe = store.subscribe("s1", lambda news: heard.append(news.event))
    unsubscribe()
    await store.append_frame("s1", {"type": "x"})
    await asyncio.sleep(0.05)
    assert heard == []


async def test_the_turn_lock_admits_one_holder_at_a_time(store: Store) -> None:
    inside = 0
    most = 0

    async def hold() -> None:
        nonlocal inside, most
        async with store.turn("s1", ttl=5):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(hold() for _ in range(10)))
    assert most == 1


async def test_nothing_is_kept_for_a_session_that_ended(store: Store) -> None:
    await store.create_session(session())
    await store.end_session("s1", "expired")
    assert await first_use(store, "s1", "c-1") is False
    await store.add_card(card())
    assert await store.get_card(cid("card1")) is None
    assert await store.due_cards(NOW + 1000) == []


async def test_only_the_newest_frames_are_kept(make_store: StoreFactory) -> None:
    store = await make_store(max_frames=5)
    await store.create_session(session())
    for n in range(12):
        await store.append_frame("s1", {"type": "x", "n": n})
    kept = await store.frames_after("s1", 0)
    assert [seq for seq, _ in kept] == [8, 9, 10, 11, 12]
    assert [seq for seq, _ in await store.frames_after("s1", 9)] == [10, 11, 12]
    assert await store.last_seq("s1") == 12


async def test_session_cards_are_listed_oldest_first_with_their_status(store: Store) -> None:
    await store.create_session(session())
    for name in ("c1", "c2", "c3"):
        await store.add_card(card(name))
    await store.transition(cid("c2"), {Status.PENDING}, Status.CANCELLED, NOW)
    listed = await store.session_cards("s1")
    assert [(name_of(c), c.status) for c in listed] == [
        ("c1", Status.PENDING),
        ("c2", Status.CANCELLED),
        ("c3", Status.PENDING),
    ]
    assert await store.session_cards("other") == []


async def test_a_card_round_trips_exactly(store: Store) -> None:
    await store.create_session(session())
    args = {"n": 2**70, "x": 0.1 + 0.2, "text": "Grüße \u2028 <b>", "nested": [{"a": None}]}
    original = card(calls=[{"action": "wipe", "args": args}])
    await store.add_card(original)
    assert await store.get_card(cid("card1")) == original
    moved = await store.transition(
        cid("card1"),
        {Status.PENDING},
        Status.APPROVED,
        NOW + 0.123456789,
        {"decided_by": "visitor:u1", "lease_until": NOW + 40.5},
    )
    stored = await store.get_card(cid("card1"))
    assert stored == moved.card
    assert (stored.status, stored.updated_at, stored.lease_until) == (
        Status.APPROVED,
        NOW + 0.123456789,
        NOW + 40.5,
    )
    assert stored.calls == original.calls


async def test_a_claimed_card_is_due_once_its_lease_is_over(store: Store) -> None:
    await store.create_session(session(expires_at=NOW + 600))
    await store.add_card(card())
    await store.transition(
        cid("card1"), {Status.PENDING}, Status.APPROVED, NOW, {"lease_until": NOW + 20}
    )
    await store.transition(cid("card1"), {Status.APPROVED}, Status.RUNNING, NOW + 1)
    assert await store.due_cards(NOW + 19) == []
    assert [name_of(c) for c in await store.due_cards(NOW + 20)] == ["card1"]
    await store.transition(
        cid("card1"), {Status.RUNNING}, Status.DONE, NOW + 2, {"lease_until": None}
    )
    assert await store.due_cards(NOW + 1000) == []


async def test_open_cards_of_an_expired_session_are_due(store: Store) -> None:
    await store.create_session(session(expires_at=NOW + 10))
    await store.add_card(card(timeout_at=NOW + 300))
    assert await store.due_cards(NOW + 9) == []
    assert [name_of(c) for c in await store.due_cards(NOW + 10)] == ["card1"]


async def test_the_turn_lock_holds_past_its_lease_while_its_holder_works(store: Store) -> None:
    order: list[str] = []

    async def first() -> None:
        async with store.turn("s1", ttl=0.3):
            order.append("first in")
            await asyncio.sleep(1.0)  # three leases long
            order.append("first out")

    async def second() -> None:
        await asyncio.sleep(0.05)
        async with store.turn("s1", ttl=0.3):
            order.append("second in")

    await asyncio.gather(first(), second())
    assert order == ["first in", "first out", "second in"]


def team_card(card_name: str, created_at: float = NOW, **changes: Any) -> Card:
    return card(
        card_name,
        approver="team",
        levels=["support-lead", "finance"],
        status=Status.WAITING,
        created_at=created_at,
        **changes,
    )


async def test_of_many_racing_level_decisions_exactly_one_moves_the_level(store: Store) -> None:
    await store.create_session(session())
    await store.add_card(team_card("card1"))

    async def approve_level_one(n: int) -> ClaimOutcome:
        approvals = [{"level": 1, "by": f"teammate:t{n}"}]
        moved = await store.transition(
            cid("card1"),
            {Status.WAITING},
            Status.WAITING,
            NOW,
            {"level": 2, "approvals": approvals},
            check_deadline=True,
            level=1,
        )
        return moved.outcome

    outcomes = await asyncio.gather(*(approve_level_one(n) for n in range(20)))
    assert outcomes.count(ClaimOutcome.OK) == 1
    assert outcomes.count(ClaimOutcome.CONFLICT) == 19
    stored = await store.get_card(cid("card1"))
    assert stored is not None
    assert (stored.status, stored.level, len(stored.approvals)) == (Status.WAITING, 2, 1)
    # The next level is claimed on its own level number, and only once.
    final = await store.transition(
        cid("card1"), {Status.WAITING}, Status.APPROVED, NOW, {"decided_by": "t"}, level=2
    )
    assert final.outcome is ClaimOutcome.OK
    stale = await store.transition(cid("card1"), {Status.WAITING}, Status.REJECTED, NOW, level=1)
    assert stale.outcome is ClaimOutcome.CONFLICT


async def test_team_cards_are_listed_newest_first_until_their_session_ends(store: Store) -> None:
    await store.create_session(session("s1"))
    await store.create_session(session("s2"))
    await store.add_card(team_card("old", NOW))
    await store.add_card(card("visitor", created_at=NOW + 1))
    await store.add_card(team_card("new", NOW + 2, session_id="s2"))
    assert [name_of(c) for c in await store.team_cards(10)] == ["new", "old"]
    assert [name_of(c) for c in await store.team_cards(1)] == ["new"]
    await store.transition(cid("old"), {Status.WAITING}, Status.REJECTED, NOW)
    assert [(name_of(c), c.status) for c in await store.team_cards(10)] == [
        ("new", Status.WAITING),
        ("old", Status.REJECTED),
    ]
    await store.end_session("s2", "expired")
    assert [name_of(c) for c in await store.team_cards(10)] == ["old"]


async def test_records_keep_a_value_until_their_ttl_or_deletion(store: Store) -> None:
    await store.put_record("login:a", "alice", 60)
    await store.put_record("login:b", "bob", 0.05)
    assert await store.get_record("login:a") == "alice"
    assert await store.get_record("missing") is None
    await asyncio.sleep(0.1)
    assert await store.get_record("login:b") is None
    await store.put_record("login:a", "alice again", 60)
    assert await store.get_record("login:a") == "alice again"
    await store.delete_record("login:a")
    assert await store.get_record("login:a") is None


async def test_waiting_cards_are_listed_longest_waiting_first_while_they_wait(
    store: Store,
) -> None:
    await store.create_session(session("s1"))
    await store.create_session(session("s2"))
    await store.add_card(team_card("first", NOW))
    await store.add_card(team_card("second", NOW + 1, session_id="s2"))
    await store.add_card(team_card("third", NOW + 2))
    await store.add_card(card("visitor", created_at=NOW + 3))
    assert [name_of(c) for c in await store.waiting_cards(10)] == ["first", "second", "third"]
    assert [name_of(c) for c in await store.waiting_cards(2)] == ["first", "second"]
    # A level moving on keeps a card waiting; a decision or expiry takes it off.
    await store.transition(
        cid("first"), {Status.WAITING}, Status.WAITING, NOW, {"level": 2}, level=1
    )
    await store.transition(cid("third"), {Status.WAITING}, Status.REJECTED, NOW)
    assert [name_of(c) for c in await store.waiting_cards(10)] == ["first", "second"]
    late = await store.transition(
        cid("first"), {Status.WAITING}, Status.APPROVED, NOW + 100, check_deadline=True
    )
    assert late.outcome is ClaimOutcome.EXPIRED
    assert [name_of(c) for c in await store.waiting_cards(10)] == ["second"]
    await store.end_session("s2", "expired")
    assert await store.waiting_cards(10) == []


async def test_many_sessions_are_read_at_once_live_ones_only(store: Store) -> None:
    await store.create_session(session("s1"))
    await store.create_session(session("s2", expires_at=NOW + 5))
    found = await store.get_sessions(["s1", "s2", "s1", "gone"], NOW + 10)
    assert list(found) == ["s1"]
    assert found["s1"] == await store.get_session("s1", NOW + 10)


async def test_counting_records_count_atomically_until_their_window_lapses(store: Store) -> None:
    counts = await asyncio.gather(*(store.count_record("tries", 0.3) for _ in range(20)))
    assert sorted(counts) == list(range(1, 21))
    await store.delete_record("tries")
    assert await store.count_record("tries", 0.3) == 1
    await asyncio.sleep(0.4)
    assert await store.count_record("tries", 0.3) == 1  # a new window


async def test_a_session_keeps_a_bounded_number_of_cards_dropping_the_oldest_ended(
    store: Store,
) -> None:
    from signoff.store.base import MAX_CARDS

    await store.create_session(session())
    await store.add_card(card("open-first"))  # still open: never dropped
    for n in range(MAX_CARDS + 5):
        await store.add_card(card(f"c{n}", status=Status.DONE, approver="team", levels=["x"]))
    kept = [name_of(c) for c in await store.session_cards("s1")]
    assert kept[0] == "open-first"  # the oldest, still open, stays...
    assert len(kept) == MAX_CARDS
    await store.transition(cid("open-first"), {Status.PENDING}, Status.CANCELLED, NOW)
    await store.add_card(card("last", status=Status.DONE))
    kept = [name_of(c) for c in await store.session_cards("s1")]
    assert "open-first" not in kept  # ...until it has ended, and the oldest ended go
    assert len(kept) == MAX_CARDS and kept[-1] == "last"
    assert await store.get_card(cid("open-first")) is None
    assert await store.get_card(cid("c0")) is None
    assert all(name_of(c) != "c0" for c in await store.team_cards(1000))


async def test_frames_appended_together_get_consecutive_seqs_and_one_wake(store: Store) -> None:
    from signoff.store import News

    await store.create_session(session())
    await store.append_frame("s1", {"type": "first"})
    heard: list[News] = []
    store.subscribe("s1", heard.append)
    await store.append_frames("s1", [{"type": "a"}, {"type": "b", "text": "é"}])
    assert await store.last_seq("s1") == 3
    kept = await store.frames_after("s1", 1)
    assert [(seq, json.loads(text)) for seq, text in kept] == [
        (2, {"type": "a", "seq": 2}),
        (3, {"type": "b", "text": "é", "seq": 3}),
    ]
    # This instance's listeners are handed the frames as they were kept.
    handed = [news for news in heard if news.frames]
    assert len(handed) == 1
    assert [(seq, json.loads(text)) for seq, text in handed[0].frames] == [
        (seq, json.loads(text)) for seq, text in kept
    ]
    await store.end_session("s1", "expired")
    await store.append_frames("s1", [{"type": "late"}])
    assert await store.frames_after("s1", 0) == []


# Outbox -------------------------------------------------------------------------------


async def test_an_outbox_lane_keeps_its_entries_in_order_up_to_its_cap(store: Store) -> None:
    assert await store.outbox_head("hooks:0") is None
    assert [await store.outbox_append("hooks:0", e, cap=2) for e in "abc"] == [True, True, False]
    assert await store.outbox_entries("hooks:0") == ["a", "b"]
    assert await store.outbox_entries("hooks:1") == []
    assert await store.outbox_head("hooks:0") == "a"
    assert await store.outbox_head("hooks:0") == "a"  # looking takes nothing


async def test_one_holder_works_a_lane_and_removes_only_the_head_it_sent(store: Store) -> None:
    for entry in ("a", "b"):
        await store.outbox_append("hooks:0", entry, cap=10)
    assert await store.outbox_lease("hooks:0", "one", ttl=30)
    assert not await store.outbox_lease("hooks:0", "two", ttl=30)
    assert await store.outbox_lease("hooks:0", "one", ttl=30)  # renewed
    assert not await store.outbox_done("hooks:0", "two", "a")  # not its lane
    assert not await store.outbox_done("hooks:0", "one", "b")  # not the head
    assert await store.outbox_done("hooks:0", "one", "a")
    assert not await store.outbox_done("hooks:0", "one", "a")  # once
    assert await store.outbox_entries("hooks:0") == ["b"]
    # Another lane is another lease.
    assert await store.outbox_lease("hooks:1", "two", ttl=30)


async def test_a_lane_passes_to_another_holder_when_released_or_lapsed(store: Store) -> None:
    await store.outbox_append("hooks:0", "a", cap=10)
    assert await store.outbox_lease("hooks:0", "one", ttl=30)
    await store.outbox_release("hooks:0", "two")  # not its lease: nothing changes
    assert not await store.outbox_lease("hooks:0", "two", ttl=30)
    await store.outbox_release("hooks:0", "one")
    assert await store.outbox_lease("hooks:0", "two", ttl=0.05)
    # The entry the first holder left is the new holder's head.
    assert await store.outbox_head("hooks:0") == "a"
    assert not await store.outbox_done("hooks:0", "one", "a")
    await asyncio.sleep(0.1)  # the second lease lapses
    assert await store.outbox_lease("hooks:0", "one", ttl=30)
    assert not await store.outbox_done("hooks:0", "two", "a")
    assert await store.outbox_done("hooks:0", "one", "a")
