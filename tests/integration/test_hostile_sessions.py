"""One visitor cannot stall the server: limits per session and per address across
sockets, a bounded conversation per turn, and bounded replays and snapshots."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from typing import Any

import pytest

from signoff import Signoff, Text
from signoff.core import conversation as conversation_module
from signoff.web import limits as limits_module
from signoff.web import ws as ws_module
from tests.support import EchoCallBot, Server, Widget, running, settings, widget

pytestmark = pytest.mark.usefixtures("each_store")


class HeldBot:
    """Answers once ``release`` is set: turns queue up behind the first."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def respond(self, conversation: list[dict[str, Any]]) -> Any:
        await self.release.wait()
        yield Text("answered")


def user_echoes(w: Widget) -> list[dict[str, Any]]:
    return [f for f in w.frames if f["type"] == "message" and f.get("role") == "user"]


async def settle(*tabs: Widget) -> None:
    for tab in tabs:
        await tab.quiet(0.3)


async def test_ten_sockets_on_one_session_share_the_sessions_limit(tmp_path: Any) -> None:
    app = Signoff(bot=EchoCallBot())
    async with running(app, settings(tmp_path)) as server, AsyncExitStack() as stack:
        first = await stack.enter_async_context(widget(server))
        welcome = await first.hello()
        tabs = [first]
        for _ in range(7):
            tab = await stack.enter_async_context(widget(server))
            await tab.hello(session_token=welcome["session_token"], last_seq=welcome["seq"])
            tabs.append(tab)
        # Each socket sends well under its own limit (a burst of 20); together, far more
        # than the session's.
        for n in range(10):
            await asyncio.gather(*(tab.say(f"say {t}-{n}") for t, tab in enumerate(tabs)))
        await settle(*tabs)
        refused = [f for tab in tabs for f in tab.frames if f["type"] == "error"]
        assert {f["code"] for f in refused} == {"rate_limited"}
        # Every tab sees every accepted message, so one tab's view counts them all.
        accepted = len(user_echoes(first))
        assert accepted <= limits_module.SESSION_BURST + 5
        assert accepted + len(refused) == 80


async def test_a_session_queues_at_most_a_few_turns(tmp_path: Any) -> None:
    bot = HeldBot()
    async with running(Signoff(bot=bot), settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        try:
            for n in range(10):
                await w.say(f"message {n}")
            refused = [await w.error("rate_limited") for _ in range(7)]
        finally:
            bot.release.set()  # the server's shutdown waits for the turns
        assert all("waiting for an answer" in f["message"] for f in refused)
        for _ in range(3):
            await w.bot_says("answered")
        assert len(user_echoes(w)) == 3
        # Once answered, the visitor may go on.
        await w.say("and now?")
        await w.expect(lambda f: f["type"] == "message" and f.get("text") == "and now?")


async def test_a_session_holds_a_bounded_number_of_sockets(tmp_path: Any) -> None:
    app = Signoff(bot=EchoCallBot())
    async with running(app, settings(tmp_path)) as server, AsyncExitStack() as stack:
        first = await stack.enter_async_context(widget(server))
        token = (await first.hello())["session_token"]
        for _ in range(limits_module.MAX_SOCKETS_PER_SESSION - 1):
            tab = await stack.enter_async_context(widget(server))
            assert (await tab.hello(session_token=token))["type"] == "welcome"
        extra = await stack.enter_async_context(widget(server))
        refused = await extra.hello(session_token=token)
        assert refused["type"] == "error" and refused["code"] == "rate_limited"
        assert "connections" in refused["message"]
        # Closing a tab frees its place.
        await first.ws.close()
        await asyncio.sleep(0.2)
        async with widget(server) as again:
            assert (await again.hello(session_token=token))["type"] == "welcome"


async def test_an_address_opens_a_bounded_number_of_new_sessions(tmp_path: Any) -> None:
    app = Signoff(bot=EchoCallBot())
    async with running(app, settings(tmp_path, address_session_rate=5)) as server:
        for _ in range(5):
            async with widget(server) as w:
                assert (await w.hello())["type"] == "welcome"
        async with widget(server) as w:
            refused = await w.hello()
        assert refused["type"] == "error" and refused["code"] == "rate_limited"


async def say_and_wait(w: Widget, words: str) -> None:
    """The echo bot says ``words`` back."""
    await w.say(f"say {words}")
    await w.expect(lambda f: f["type"] == "message.end" and f["text"] == words)


async def saved_conversation(server: Server, session_id: str) -> list[dict[str, Any]]:
    conversation: list[dict[str, Any]] = await server.engine.store.load_conversation(session_id)
    return conversation


async def test_the_conversation_a_turn_loads_and_saves_is_bounded(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conversation_module, "MAX_MESSAGES", 10)
    app = Signoff(bot=EchoCallBot())
    async with running(app, settings(tmp_path)) as server, widget(server) as w:
        session_id = (await w.hello())["session_id"]
        for n in range(15):
            await say_and_wait(w, f"turn {n}")
        saved = await saved_conversation(server, session_id)
        assert len(saved) <= 10
        assert saved[-2:] == [
            {"role": "user", "content": "say turn 14"},
            {"role": "assistant", "content": "turn 14"},
        ]


async def test_a_short_hello_gets_a_bounded_snapshot_not_the_whole_history(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_module, "REPLAY_BUDGET", 16_000)
    monkeypatch.setattr(conversation_module, "MAX_CHARS", 8_000)
    app = Signoff(bot=EchoCallBot())
    async with running(app, settings(tmp_path)) as server:
        async with widget(server) as w:
            welcome = await w.hello()
            for n in range(8):
                await say_and_wait(w, f"{n} " + "x" * 3000)
        async with widget(server) as again:
            await again.hello(session_token=welcome["session_token"], last_seq=1)
            snapshot = await again.expect(lambda f: f["type"] == "snapshot")
            size = len(json.dumps(snapshot))
            assert size < 16_000
            shown = [f["text"] for f in snapshot["frames"] if f["type"] == "message.end"]
            assert shown[-1].startswith("7 ")  # the newest is there
            assert not [f for f in again.frames if f["type"] == "message.delta"]


async def test_sessions_from_one_address_share_the_addresss_limit(tmp_path: Any) -> None:
    app = Signoff(bot=EchoCallBot())
    config = settings(tmp_path, address_message_rate=1.0)  # a burst of 6, then 1 a second
    async with running(app, config) as server, AsyncExitStack() as stack:
        tabs = [await stack.enter_async_context(widget(server)) for _ in range(3)]
        for tab in tabs:
            await tab.hello()
        for n in range(4):  # each session well under its own limit
            for tab in tabs:
                await tab.say(f"say {n}")
        await settle(*tabs)
        refused = [f for tab in tabs for f in tab.frames if f["type"] == "error"]
        accepted = sum(len(user_echoes(tab)) for tab in tabs)
        assert {f["code"] for f in refused} == {"rate_limited"}
        assert "too many messages from this visitor" in {f["message"] for f in refused}
        assert accepted <= 8 and accepted + len(refused) == 12
