"""The design's guarantees, each shown over a real WebSocket against the running app."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from signoff.store import StoreUnavailable
from tests.support import (
    CountingShop,
    assert_origin_refused,
    audit_statuses,
    expected_replay,
    replayed_seqs,
    running,
    settings,
    widget,
)

# Every guarantee holds on each store, a Redis Cluster included.
pytestmark = [
    pytest.mark.usefixtures("each_store"),
    pytest.mark.parametrize("each_store", ["memory", "redis", "redis-cluster"], indirect=True),
]


@pytest.fixture
def shop() -> CountingShop:
    return CountingShop()


async def test_another_sessions_decision_is_forbidden_and_nothing_runs(
    shop: CountingShop, tmp_path: Any
) -> None:
    async with running(shop.app, settings(tmp_path)) as server:
        async with widget(server) as owner, widget(server) as intruder:
            await owner.hello()
            await intruder.hello()
            await owner.say("wipe disk")
            card = await owner.card("pending")
            await intruder.decide(card)
            error = await intruder.error()
            assert (error["code"], error["ref"]) == ("forbidden", card["card_id"])
            assert shop.runs == []
            # The rightful owner can still decide it.
            await owner.decide(card)
            await owner.update(card["card_id"], "done")
            assert shop.runs == [("wipe", {"target": "disk"})]
        rows = await server.engine.audit.rows(status="refused")
        assert [(r["action"], r["card_id"]) for r in rows] == [("wipe", card["card_id"])]


async def test_decision_with_extra_fields_is_a_bad_frame(shop: CountingShop, tmp_path: Any) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        card = await w.open_card()
        await w.decide(card, args={"target": "everything"})
        error = await w.error()
        assert error["code"] == "bad_frame"
        assert "args" in error["message"]
        assert await w.quiet() == []
        assert shop.runs == []
        assert (await server.engine.store.get_card(card["card_id"])).status == "pending"


async def test_wrong_args_hash_is_a_hash_mismatch(shop: CountingShop, tmp_path: Any) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        card = await w.open_card()
        await w.decide({**card, "args_hash": "sha256:" + "0" * 64})
        error = await w.error()
        assert (error["code"], error["ref"]) == ("hash_mismatch", card["card_id"])
        assert shop.runs == []
        assert (await server.engine.store.get_card(card["card_id"])).status == "pending"


async def test_two_tabs_confirming_at_once_run_the_card_once(
    shop: CountingShop, tmp_path: Any
) -> None:
    async with running(shop.app, settings(tmp_path)) as server:
        async with widget(server) as tab1:
            await tab1.hello()
            token = tab1.welcome["session_token"]
            async with widget(server) as tab2:
                await tab2.hello(session_token=token)
                await tab1.say("wipe disk")
                card = await tab1.card("pending")
                assert (await tab2.card("pending"))["card_id"] == card["card_id"]
                await asyncio.gather(tab1.decide(card), tab2.decide(card))
                for tab in (tab1, tab2):
                    await tab.update(card["card_id"], "done")
                # The loser hears back once the winner's run has finished.
                await asyncio.gather(tab1.quiet(), tab2.quiet())
                errors = [f for f in tab1.frames + tab2.frames if f["type"] == "error"]
                assert [e["code"] for e in errors] == ["already_decided"]
                assert shop.runs == [("wipe", {"target": "disk"})]
        assert await audit_statuses(server, "wipe") == ["pending_confirmation", "success"]


async def test_a_claim_whose_answer_was_lost_runs_nothing_even_when_confirmed_again(
    shop: CountingShop, tmp_path: Any
) -> None:
    """The store made the claim but its answer never came back (a connection dropped or a
    reply overdue): the visitor hears `unavailable`, and confirming again runs nothing."""
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        store = server.engine.store
        transition = store.transition
        lost: list[str] = []

        async def answer_lost(card_id: str, *args: Any, **kwargs: Any) -> Any:
            moved = await transition(card_id, *args, **kwargs)
            if not lost:
                lost.append(card_id)
                raise StoreUnavailable("the answer was lost")
            return moved

        store.transition = answer_lost  # type: ignore[method-assign]
        card = await w.open_card()
        await w.decide(card)
        assert (await w.error("unavailable"))["ref"] == card["card_id"]
        await w.decide(card)
        assert (await w.error("already_decided"))["ref"] == card["card_id"]
        assert lost == [card["card_id"]]
        assert shop.runs == []
        assert (await store.get_card(card["card_id"])).status == "approved"


async def test_card_of_an_expired_session_cannot_be_accepted(
    shop: CountingShop, tmp_path: Any
) -> None:
    # A sweeper that never runs during the test: expiry must hold at claim time.
    config = settings(tmp_path, session_ttl=0.6, sweep_interval=3600)
    async with running(shop.app, config) as server, widget(server) as w:
        card = await w.open_card()
        await asyncio.sleep(0.8)
        await w.decide(card)
        assert (await w.error("expired"))["code"] == "expired"
        assert shop.runs == []
        # The engine's own claim refuses it too, whoever asks.
        session_id = w.welcome["session_id"]
        assert await server.engine.store.get_session(session_id, server.engine.clock()) is None
        stored = await server.engine.store.get_card(card["card_id"])
        moved = await server.engine.store.transition(
            card["card_id"], {"pending"}, "approved", server.engine.clock(), check_deadline=True
        )
        assert (stored.status, moved.outcome, moved.card.status) == (
            "pending",
            "expired",
            "expired",
        )
        assert shop.runs == []


async def test_card_past_its_own_timeout_cannot_be_accepted(tmp_path: Any) -> None:
    shop = CountingShop(timeout=0.5)
    async with running(shop.app, settings(tmp_path, sweep_interval=3600)) as server:
        async with widget(server) as w:
            card = await w.open_card()
            await asyncio.sleep(0.7)
            await w.decide(card)
            error = await w.error("expired")
            assert error["ref"] == card["card_id"]
            await w.update(card["card_id"], "expired")
            # The bot is told and the conversation goes on.
            reply = await w.expect(lambda f: f["type"] == "message.end")
            assert "expired" in reply["text"]
            assert shop.runs == []
        assert await audit_statuses(server, "wipe") == ["pending_confirmation", "expired"]


async def test_sweeper_expires_cards_tells_widgets_and_ends_the_session(
    shop: CountingShop, tmp_path: Any
) -> None:
    config = settings(tmp_path, session_ttl=0.5, sweep_interval=0.1)
    async with running(shop.app, config) as server, widget(server) as w:
        card = await w.open_card()
        await w.update(card["card_id"], "expired")
        await w.expect(lambda f: f["type"] == "session.end", within=5)
        assert await audit_statuses(server, "wipe") == ["pending_confirmation", "expired"]
        # The socket stays usable: a fresh hello starts a new session.
        w.welcome = {}
        fresh = await w.hello()
        assert fresh["type"] == "welcome"
        assert fresh["session_id"] != card["card_id"]
    assert shop.runs == []


async def test_reconnect_with_last_seq_replays_the_rest_once_in_order(
    shop: CountingShop, tmp_path: Any
) -> None:
    async with running(shop.app, settings(tmp_path)) as server:
        async with widget(server) as w:
            await w.hello()
            token = w.welcome["session_token"]
            await w.say("say one")
            await w.bot_says("one")
            seen = max(f["seq"] for f in w.frames if "seq" in f and f["type"] != "welcome")
        # While no tab is connected, more history happens (a second tab, then it leaves).
        async with widget(server) as other:
            await other.hello(session_token=token, last_seq=seen)
            await other.say("say two")
            await other.bot_says("two")
            await other.say("wipe disk")
            await other.card("pending")
        async with widget(server) as back:
            welcome = await back.hello(session_token=token, last_seq=seen)
            assert welcome["session_id"] == w.welcome["session_id"]
            await back.card("pending")
            await back.quiet()
            replayed = [f for f in back.frames if "seq" in f and f["type"] != "welcome"]
            sid = welcome["session_id"]
            assert replayed_seqs(back) == await expected_replay(server, sid, seen)
            assert replayed_seqs(back)[-1] == welcome["seq"]
            texts = [f["text"] for f in replayed if f["type"] == "message"]
            assert texts == ["say two", "wipe disk"]
        # A reload (last_seq 0) gets the whole conversation, each frame once.
        async with widget(server) as reload:
            welcome = await reload.hello(session_token=token)
            await reload.card("pending")
            await reload.quiet()
            assert replayed_seqs(reload) == await expected_replay(server, sid, 0)
            bot_texts = [f["text"] for f in reload.frames if f["type"] == "message.end"]
            assert bot_texts == ["one", "two"]
            assert not [f for f in reload.frames if f["type"] == "message.delta"]


async def test_a_socket_handed_more_frames_than_it_holds_reads_them_once_in_order(
    shop: CountingShop, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow reader's socket stops holding the frames handed to it and reads the history
    instead: each frame still arrives once, in order."""
    monkeypatch.setattr("signoff.web.ws.MAX_HANDED_FRAMES", 2)
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        for n in range(3):
            await w.say(f"say {n}")
            await w.bot_says(f"{n}")
        card = await w.open_card()
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.quiet()
        sid = w.welcome["session_id"]
        seqs = [f["seq"] for f in w.frames if "seq" in f and f["type"] != "welcome"]
        assert seqs == list(range(1, await server.engine.store.last_seq(sid) + 1))


async def test_forged_session_token_is_unauthorized(shop: CountingShop, tmp_path: Any) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        token = w.welcome["session_token"]
        forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        async with widget(server) as attacker:
            reply = await attacker.hello(session_token=forged)
            assert (reply["type"], reply["code"]) == ("error", "unauthorized")
            # Not authenticated: a decision or message is refused.
            client_id = await attacker.say("wipe disk")
            refused = await attacker.error("unauthorized")
            assert (refused["message"], refused["ref"]) == ("send hello first", client_id)
    assert shop.runs == []


async def test_foreign_origin_is_refused_with_its_reason_and_logged_once(
    shop: CountingShop, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(shop.app, settings(tmp_path)) as server:
        for _ in range(3):
            await assert_origin_refused(server.ws_url, "https://evil.example")
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(server.ws_url):  # no Origin: not a browser
                pass
        assert refused.value.response.status_code == 403
    said = [r.getMessage() for r in caplog.records if "refused a widget" in r.getMessage()]
    assert said == [
        "refused a widget on origin 'https://evil.example': no site lists it; add it to the "
        "origins of the page's site ([sites.NAME] origins = [...] in the config file; "
        "docs/embedding.md#allowed-origins)"
    ]
    assert shop.runs == []


async def test_unknown_site_is_refused_closed_and_named_in_the_log(
    shop: CountingShop, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        reply = await w.hello(site="shop")
        assert (reply["code"], reply["message"]) == ("forbidden", "unknown site 'shop'")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await w.ws.recv()
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "unknown site")
    said = [r.getMessage() for r in caplog.records if "refused a widget" in r.getMessage()]
    assert said == [
        "refused a widget on origin 'http://127.0.0.1': it names site 'shop', which is not "
        "configured; the page's data-site must be one of demo"
    ]


async def test_origin_allowed_for_another_site_only_is_refused_at_hello(tmp_path: Any) -> None:
    from signoff.config import Site

    shop = CountingShop()
    sites = {
        "demo": Site("demo", ("http://127.0.0.1:*",)),
        "shop": Site("shop", ("https://shop.example",)),
    }
    async with (
        running(shop.app, settings(tmp_path, sites=sites)) as server,
        widget(server, origin="https://shop.example") as w,
    ):
        reply = await w.hello(site="demo")
        assert (reply["code"], reply["message"]) == (
            "forbidden",
            "origin not allowed for this site",
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await w.ws.recv()
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "origin not allowed")


MALFORMED = [
    "not json",
    "[]",
    "{}",
    json.dumps({"type": "shout"}),
    json.dumps({"type": "ping", "extra": 1}),
    json.dumps({"type": "message", "client_id": "c-1"}),
    json.dumps({"type": "message", "client_id": "c 1!", "text": "x"}),
    json.dumps({"type": "message", "client_id": "c-1", "text": 5}),
    json.dumps({"type": "decision", "card_id": "x", "decision": "maybe", "args_hash": "x"}),
    json.dumps({"type": "hello", "site": "demo", "last_seq": -1}),
]


async def test_each_malformed_frame_gets_an_error_and_the_socket_stays_up(
    shop: CountingShop, tmp_path: Any
) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        for raw in MALFORMED:
            await w.send(raw)
            error = await w.error()
            assert error["code"] == "bad_frame", raw
        await w.ws.send(b"\x00binary")
        assert (await w.error())["code"] == "bad_frame"
        await w.send({"type": "message", "client_id": "long", "text": "x" * 5000})
        assert (await w.error())["code"] == "too_large"
        await w.send({"type": "ping"})
        await w.expect(lambda f: f["type"] == "pong")
        await w.say("say still here")
        await w.bot_says("still here")
    assert shop.runs == []


async def test_frames_read_two_ways_or_nested_too_deeply_are_bad_frames_and_run_nothing(
    shop: CountingShop, tmp_path: Any
) -> None:
    """A decision whose repeated key would read as cancel to one parser and confirm to
    another, and a decision nested deeper than a parser follows (the malformed-decision
    path reads it twice): each is a bad_frame on a socket that stays up."""
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        card = await w.open_card()
        head = f'{{"type": "decision", "card_id": "{card["card_id"]}", '
        tail = f'"args_hash": "{card["args_hash"]}"}}'
        deep = "[" * 30_000 + "]" * 30_000
        for raw in (
            head + '"decision": "cancel", "decision": "confirm", ' + tail,
            head + f'"decision": "confirm", "x": {deep}, ' + tail,
            '{"type": "ping", "type": "ping"}',
        ):
            await w.send(raw)
            assert (await w.error())["code"] == "bad_frame", raw[:80]
        await w.send({"type": "ping"})
        await w.expect(lambda f: f["type"] == "pong")
        assert shop.runs == []
        assert (await server.engine.store.get_card(card["card_id"])).status == "pending"
        await w.decide(card)
        await w.update(card["card_id"], "done")
    assert shop.runs == [("wipe", {"target": "disk"})]


async def test_oversized_frame_closes_with_1009_and_the_server_stays_healthy(
    shop: CountingShop, tmp_path: Any
) -> None:
    async with running(shop.app, settings(tmp_path)) as server:
        async with widget(server) as w:
            await w.hello()
            await w.send({"type": "message", "client_id": "big", "text": "x" * 70_000})
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await w.ws.recv()
            assert closed.value.sent is None or closed.value.rcvd.code == 1009
            assert closed.value.rcvd.code == 1009
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.url + "/healthz")).json() == {"status": "ok"}
        async with widget(server) as w:
            await w.hello()
            await w.say("say fine")
            await w.bot_says("fine")


async def test_flooding_frames_is_rate_limited_and_the_socket_stays_up(
    shop: CountingShop, tmp_path: Any
) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        for _ in range(60):
            await w.send({"type": "ping"})
        await w.error("rate_limited")
        await asyncio.sleep(1.0)
        await w.send({"type": "ping"})
        await w.quiet(0.3)
        assert w.frames[-1] == {"type": "pong"}


async def test_resent_message_with_the_same_client_id_is_handled_once(
    shop: CountingShop, tmp_path: Any
) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("wipe disk", client_id="c-same")
        await w.say("wipe disk", client_id="c-same")
        await w.card("pending")
        await w.quiet()
        assert len([f for f in w.frames if f["type"] == "message"]) == 1
        assert len([f for f in w.frames if f["type"] == "card"]) == 1


async def test_cancel_runs_nothing_and_the_bot_is_told(shop: CountingShop, tmp_path: Any) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        card = await w.open_card()
        await w.decide(card, "cancel")
        await w.update(card["card_id"], "cancelled")
        reply = await w.expect(lambda f: f["type"] == "message.end")
        assert "the user declined" in reply["text"]
        await w.decide(card)
        assert (await w.error("already_decided"))["ref"] == card["card_id"]
        assert shop.runs == []
        assert await audit_statuses(server, "wipe") == ["pending_confirmation", "cancelled"]


async def test_user_token_sets_the_user_and_binds_the_session(tmp_path: Any) -> None:
    from signoff import sign_user_token
    from tests.support import SECRET

    shop = CountingShop()
    async with running(shop.app, settings(tmp_path)) as server:
        async with widget(server) as w:
            welcome = await w.hello(user_token=sign_user_token(SECRET, "alice", 60))
            assert welcome["user_id"] == "alice"
        async with widget(server) as w:
            reply = await w.hello(
                session_token=welcome["session_token"],
                user_token=sign_user_token(SECRET, "mallory", 60),
            )
            assert (reply["code"], reply["message"]) == (
                "forbidden",
                "the session belongs to another user",
            )
        async with widget(server) as w:
            reply = await w.hello(user_token=sign_user_token("another-secret-123456", "eve", 60))
            assert reply["code"] == "unauthorized"


async def test_signed_in_sessions_need_the_pages_user_to_resume(tmp_path: Any) -> None:
    from signoff import sign_user_token
    from tests.support import SECRET

    async with running(CountingShop().app, settings(tmp_path)) as server:
        async with widget(server) as w:
            welcome = await w.hello(user_token=sign_user_token(SECRET, "alice", 60))
        token = welcome["session_token"]
        # The short-lived user token has run out by the next reconnect: the session
        # token carries on, as long as the page still names the same user.
        stale = sign_user_token(SECRET, "alice", 60, now=0)
        async with widget(server) as w:
            again = await w.hello(session_token=token, user_token=stale)
            assert again["session_id"] == welcome["session_id"]
        # A page with no signed-in user (logged out) cannot pick the session up.
        async with widget(server) as w:
            reply = await w.hello(session_token=token)
            assert (reply["code"], reply["message"]) == (
                "forbidden",
                "the session belongs to a signed-in user",
            )
        # A stale user token cannot start a new session.
        async with widget(server) as w:
            reply = await w.hello(user_token=stale)
            assert (reply["code"], reply["message"]) == ("unauthorized", "user token has expired")


async def test_rate_limited_decisions_name_their_card(shop: CountingShop, tmp_path: Any) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        card = await w.open_card()
        for _ in range(25):
            await w.send({"type": "ping"})
        await w.decide(card)
        error = await w.expect(lambda f: f["type"] == "error" and f.get("ref") == card["card_id"])
        assert error["code"] == "rate_limited"
        assert (await server.engine.store.get_card(card["card_id"])).status == "pending"


async def test_the_app_itself_closes_oversized_frames_with_1009(
    shop: CountingShop, tmp_path: Any
) -> None:
    # A server configured with a larger limit than signoff's own.
    async with (
        running(shop.app, settings(tmp_path), ws_max_size=1 << 20) as server,
        widget(server) as w,
    ):
        await w.hello()
        await w.send({"type": "message", "client_id": "big", "text": "x" * 70_000})
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await w.ws.recv()
        assert closed.value.rcvd.code == 1009
    assert shop.runs == []


async def test_bot_text_streams_as_it_comes(tmp_path: Any) -> None:
    from signoff import Signoff
    from tests.support import StreamingBot

    bot = StreamingBot()
    async with running(Signoff(bot=bot), settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("hi")
        start = await w.expect(lambda f: f["type"] == "message.start")
        first = await w.expect(lambda f: f["type"] == "message.delta")
        assert (first["message_id"], first["text"]) == (start["message_id"], "Hello ")
        assert not [f for f in w.frames if f["type"] == "message.end"]
        async with widget(server) as late_tab:
            # Joining mid-reply: the unfinished message replays with its deltas so far.
            await late_tab.hello(session_token=w.welcome["session_token"])
            partial = await late_tab.expect(lambda f: f["type"] == "message.delta")
            assert partial["text"] == "Hello "
            bot.release.set()
            end = await w.expect(lambda f: f["type"] == "message.end")
            assert (end["message_id"], end["text"]) == (start["message_id"], "Hello world")
            assert (await late_tab.expect(lambda f: f["type"] == "message.end")) == end


async def test_reconnect_with_a_last_seq_from_another_session_replays_everything(
    shop: CountingShop, tmp_path: Any
) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("wipe disk")
        await w.card("pending")
        token = w.welcome["session_token"]
        async with widget(server) as other_tab:
            # This tab saw seq 40 of some older session; it now resumes the stored one.
            welcome = await other_tab.hello(session_token=token, last_seq=40)
            await other_tab.card("pending")
            await other_tab.quiet()
            sid = welcome["session_id"]
            assert replayed_seqs(other_tab) == await expected_replay(server, sid, 0)


async def test_text_that_utf8_cannot_encode_does_not_break_the_history(tmp_path: Any) -> None:
    from signoff import Signoff, Text

    class Odd:
        async def respond(self, conversation: Any) -> Any:
            yield Text("file \udc80.txt is ready")

    async with running(Signoff(bot=Odd()), settings(tmp_path)) as server:
        async with widget(server) as w:
            await w.hello()
            await w.say("go")
            end = await w.expect(lambda f: f["type"] == "message.end")
            assert end["text"] == "file \udc80.txt is ready"
            await w.say("go again")
            await w.expect(lambda f: f["type"] == "message.end")
        async with widget(server) as back:
            welcome = await back.hello(session_token=w.welcome["session_token"])
            await back.quiet()
            sid = welcome["session_id"]
            assert replayed_seqs(back) == await expected_replay(server, sid, 0)
            ends = [f["text"] for f in back.frames if f["type"] == "message.end"]
            assert ends == ["file \udc80.txt is ready"] * 2


async def test_a_flood_gets_one_slow_down_notice_per_second(
    shop: CountingShop, tmp_path: Any
) -> None:
    async with running(shop.app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        for _ in range(300):
            await w.send({"type": "ping"})
        await w.quiet(0.5)
        notices = [f for f in w.frames if f.get("code") == "rate_limited"]
        assert len(notices) == 1
        assert len([f for f in w.frames if f["type"] == "pong"]) <= 21


async def test_a_site_may_allow_the_origin_that_serves_signoff_itself(tmp_path: Any) -> None:
    from signoff.config import SELF, Site

    sites = {"demo": Site("demo", (SELF,))}
    async with running(CountingShop().app, settings(tmp_path, sites=sites)) as server:
        async with widget(server, origin=server.url) as w:
            assert (await w.hello())["type"] == "welcome"
        await assert_origin_refused(server.ws_url, "http://127.0.0.1:1")


async def test_a_reconnect_from_before_trimmed_history_gets_a_snapshot(
    shop: CountingShop, tmp_path: Any, each_store: str
) -> None:
    small = each_store + ("&" if "?" in each_store else "?") + "max_frames=6"
    async with running(shop.app, settings(tmp_path, store=small)) as server:
        async with widget(server) as w:
            await w.hello()
            token = w.welcome["session_token"]
            await w.say("say one")
            await w.bot_says("one")
            done = await w.open_card("wipe disk")
            await w.decide(done)
            await w.update(done["card_id"], "done")
            await w.bot_says("result")
            await w.say("say two")
            await w.bot_says("two")
            pending = await w.open_card("wipe tape")
        async with widget(server) as back:
            welcome = await back.hello(session_token=token, last_seq=1)
            snapshot = await back.expect(lambda f: f["type"] == "snapshot")
            assert snapshot["seq"] == welcome["seq"]
            shown = snapshot["frames"]
            assert all("seq" not in f for f in shown)
            said = [
                (f["type"], f["text"].split(":")[0])
                for f in shown
                if f["type"] in {"message", "message.end"}
            ]
            assert said == [
                ("message", "say one"),
                ("message.end", "one"),
                ("message", "wipe disk"),
                ("message.end", "result"),
                ("message", "say two"),
                ("message.end", "two"),
                ("message", "wipe tape"),
            ]
            cards = [(f["type"], f["card_id"], f["status"]) for f in shown if "card" in f["type"]]
            assert cards == [
                ("card", done["card_id"], "done"),
                ("card.update", done["card_id"], "done"),
                ("card", pending["card_id"], "pending"),
            ]
            # The snapshot stands for everything up to it: nothing older follows.
            assert await back.quiet() == []
            await back.decide(pending)
            await back.update(pending["card_id"], "done")
    assert shop.runs == [("wipe", {"target": "disk"}), ("wipe", {"target": "tape"})]


async def test_a_session_is_resumed_only_within_its_lifetime_from_its_start(
    shop: CountingShop, tmp_path: Any
) -> None:
    from signoff.core.tokens import SessionClaims, load_session_token, sign_session_token
    from tests.support import SECRET

    lifetime = 3600.0
    async with running(shop.app, settings(tmp_path, session_lifetime=lifetime)) as server:
        async with widget(server) as w:
            first = await w.hello()
        start = load_session_token(SECRET, first["session_token"]).issued_at
        assert start is not None
        async with widget(server) as w:
            again = await w.hello(session_token=first["session_token"])
            assert again["session_id"] == first["session_id"]
            assert load_session_token(SECRET, again["session_token"]).issued_at == start
        old = SessionClaims(first["session_id"], first["user_id"], "demo", start - lifetime)
        async with widget(server) as w:
            refused = await w.hello(session_token=sign_session_token(SECRET, old))
            assert (refused["type"], refused["code"]) == ("error", "expired")
            assert (await w.hello())["session_id"] != first["session_id"]
