"""Two or more server processes on one Redis, with no sticky sessions: any instance serves
any request, crashes and restarts lose nothing, and nothing runs twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.multi.conftest import Cluster, Instance, eventually
from tests.services import private_redis
from tests.support import Widget, free_port, widget


def history_seqs(w: Widget) -> list[int]:
    return [f["seq"] for f in w.frames if "seq" in f and f["type"] != "welcome"]


async def card_on(instance: Instance, text: str) -> tuple[dict[str, Any], str]:
    """Start a session on ``instance`` with a pending card: the card and the session token."""
    async with widget(instance) as w:  # type: ignore[arg-type]
        card = await w.open_card(text)
        return card, w.welcome["session_token"]


@asynccontextmanager
async def resumed(instance: Instance, token: str) -> AsyncIterator[Widget]:
    """A widget on ``instance`` that resumed the session."""
    async with widget(instance) as w:  # type: ignore[arg-type]
        welcome = await w.hello(session_token=token)
        assert welcome["type"] == "welcome", welcome
        yield w


async def test_a_session_moves_to_the_other_instance_mid_turn(cluster: Cluster) -> None:
    a, b = await cluster.start(), await cluster.start()
    async with widget(a) as on_a:  # type: ignore[arg-type]
        await on_a.hello()
        token = on_a.welcome["session_token"]
        await on_a.say("slowly wipe disk")
        await on_a.expect(lambda f: f["type"] == "message.delta" and "piece 1" in f["text"])
        seen = history_seqs(on_a)
    # The socket drops; the page reconnects through the load balancer and lands on b,
    # while a is still streaming the turn.
    async with widget(b) as on_b:  # type: ignore[arg-type]
        await on_b.hello(session_token=token, last_seq=seen[-1])
        card = await on_b.card("pending")
        end = await on_b.expect(lambda f: f["type"] == "message.end")
        assert end["text"] == "".join(f"piece {n}. " for n in range(10))
        await on_b.decide(card)
        await on_b.update(card["card_id"], "done")
        await on_b.bot_says("result")
        # Every frame once, in order, across the two sockets.
        both = seen + history_seqs(on_b)
        assert both == list(range(1, both[-1] + 1))
    assert cluster.runs() == ["wipe disk"]


async def test_ten_tabs_on_two_instances_confirming_at_once_run_the_card_once(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(), await cluster.start()
    card, token = await card_on(a, "wipe disk")
    async with AsyncExitStack() as stack:
        tabs = [await stack.enter_async_context(resumed([a, b][n % 2], token)) for n in range(10)]
        for tab in tabs:
            await tab.card("pending")
        await asyncio.gather(*(tab.decide(card) for tab in tabs))
        for tab in tabs:
            await tab.update(card["card_id"], "done")

        def refused() -> list[str]:
            return [
                f["code"]
                for tab in tabs
                for f in tab.frames
                if f["type"] == "error" and f.get("ref") == card["card_id"]
            ]

        for _ in range(10):
            if len(refused()) == 9:
                break
            for tab in tabs:
                await tab.quiet(0.05)
        # Every tab sees the card done; all but the winner were told it was already decided.
        assert refused() == ["already_decided"] * 9
    assert cluster.runs() == ["wipe disk"]
    assert (await cluster.audit()).count(("wipe", "success")) == 1


async def test_an_instance_killed_with_a_card_open_leaves_it_to_the_other(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(), await cluster.start()
    card, token = await card_on(a, "wipe disk")
    await a.kill()
    async with resumed(b, token) as on_b:
        replayed = await on_b.card("pending")
        assert replayed["card_id"] == card["card_id"]
        await on_b.decide(replayed)
        # a may have died still holding the session's turn lock, which then lapses.
        await on_b.expect(lambda f: f["type"] == "card.update" and f["status"] == "done", within=15)
        await on_b.bot_says("result")
    assert cluster.runs() == ["wipe disk"]


async def test_an_instance_killed_between_claim_and_finish_leaves_the_card_interrupted(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(), await cluster.start()
    async with widget(a) as on_a:  # type: ignore[arg-type]
        card = await on_a.open_card("hang disk")
        async with resumed(b, on_a.welcome["session_token"]) as watcher:
            await on_a.decide(card)
            await eventually(lambda: cluster.runs() == ["hang disk"])
            await a.kill()  # claimed, running, never finished
            # b's sweeper finds the lease over and marks the card interrupted, once.
            update = await watcher.expect(
                lambda f: f["type"] == "card.update" and f["status"] == "interrupted", within=30
            )
            assert update["card_id"] == card["card_id"]
            await watcher.bot_says("result")
            await watcher.quiet(1.5)  # several sweeps
    assert cluster.runs() == ["hang disk"]  # never run again
    assert (await cluster.audit()) == [("hang", "pending_confirmation"), ("hang", "interrupted")]


async def test_a_turn_paused_on_a_card_resumes_after_every_instance_restarted(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(), await cluster.start()
    card, token = await card_on(a, "wipe disk")
    await a.stop()
    await b.stop()
    c, d = await cluster.start(), await cluster.start()
    async with resumed(c, token) as on_c, resumed(d, token) as on_d:
        for w in (on_c, on_d):
            assert (await w.card("pending"))["card_id"] == card["card_id"]
        await on_d.decide(card)
        for w in (on_c, on_d):
            await w.update(card["card_id"], "done")
            await w.bot_says("result")
    assert cluster.runs() == ["wipe disk"]


async def test_every_instance_sweeps_but_each_card_expires_once(cluster: Cluster) -> None:
    short = {"SIGNOFF_SESSION_TTL": "1"}
    a, b = await cluster.start(**short), await cluster.start(**short)
    async with widget(a) as on_a, widget(b) as on_b:  # type: ignore[arg-type]
        card = await on_a.open_card("wipe disk")
        await on_b.hello(session_token=on_a.welcome["session_token"])
        for w in (on_a, on_b):
            await w.update(card["card_id"], "expired")
            await w.expect(lambda f: f["type"] == "session.end")
            await w.quiet(0.5)
            expiries = [f for f in w.frames if f.get("status") == "expired"]
            assert len(expiries) == 1
    assert (await cluster.audit()) == [("wipe", "pending_confirmation"), ("wipe", "expired")]
    assert cluster.runs() == []


# On a Redis of its own, whatever store the other tests share.
@pytest.mark.parametrize("store_kind", ["redis"])
async def test_redis_restarted_mid_session(cluster: Cluster, tmp_path: Path) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    async with private_redis(str(data), free_port()) as redis_server:
        store = {"SIGNOFF_STORE": redis_server.url + "?prefix=restart"}
        a, b = await cluster.start(**store), await cluster.start(**store)
        async with widget(a) as on_a:  # type: ignore[arg-type]
            card = await on_a.open_card("wipe disk")
            token = on_a.welcome["session_token"]
            await redis_server.stop()
            # While Redis is down: clear errors, and load balancers are told to wait.
            client_id = await on_a.say("wipe tape")
            error = await on_a.error("unavailable")
            assert error["ref"] == client_id
            # A decision that cannot be claimed is refused, not half-made: it runs nothing.
            await on_a.decide(card)
            refused = await on_a.error("unavailable")
            assert refused["ref"] == card["card_id"]
            assert await a.health() == 503 and await b.health() == 503
            await redis_server.start()
            assert await a.health() == 200 and await b.health() == 200
            # Back: the session, its card and its history are all there, on either
            # instance, and the socket that stayed open on a follows what b does.
            async with resumed(b, token) as on_b:
                await on_b.card("pending")
                await on_b.decide(card)
                await on_b.update(card["card_id"], "done")
                await on_a.update(card["card_id"], "done")
                await on_b.decide(card)
                await on_b.error("already_decided")
        await cluster.stop()
    assert cluster.runs() == ["wipe disk"]


async def test_a_dead_instances_claimed_card_is_settled_in_seconds_not_at_its_lease(
    cluster: Cluster,
) -> None:
    """The lease here is five minutes; the other instance sees the claimer stop beating."""
    long_lease = {"SIGNOFF_LEASE_MARGIN": "300"}
    a, b = await cluster.start(**long_lease), await cluster.start(**long_lease)
    async with widget(a) as on_a:  # type: ignore[arg-type]
        card = await on_a.open_card("hang disk")
        async with resumed(b, on_a.welcome["session_token"]) as watcher:
            await on_a.decide(card)
            await eventually(lambda: cluster.runs() == ["hang disk"])
            await a.kill()
            killed = asyncio.get_running_loop().time()
            update = await watcher.expect(
                lambda f: f["type"] == "card.update" and f["status"] == "interrupted", within=20
            )
            assert asyncio.get_running_loop().time() - killed < 10
            assert update["card_id"] == card["card_id"]
            await watcher.bot_says("result")
    assert cluster.runs() == ["hang disk"]  # never run again
    assert (await cluster.audit()) == [("hang", "pending_confirmation"), ("hang", "interrupted")]
