"""Signoff.call over the socket: a host page's call opens a card with every guarantee a
bot's card has, and leaves the bot's conversation as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from signoff.config import ConfigError, Site
from signoff.demo import demo_app
from tests.support import running, settings, widget

pytestmark = pytest.mark.usefixtures("each_store")

SITES = {"demo": Site("demo", ("http://127.0.0.1:*",), page_actions=("cancel_order",))}
CALL = {
    "type": "call",
    "client_id": "page-1",
    "action": "cancel_order",
    "args": {"order_id": 1001, "customer": "Ada Lovelace", "total": 89.5},
}


async def test_a_page_call_opens_one_card_and_touches_no_turn(tmp_path: Path) -> None:
    async with running(demo_app(), settings(tmp_path, sites=SITES)) as server, widget(server) as w:
        await w.hello()
        await w.send(CALL)
        await w.send(CALL)  # sent again after a reconnect: one card
        card = await w.card("pending")
        assert card["page_call"] == "page-1"
        await w.decide(card)
        done = await w.update(card["card_id"], "done")
        assert done["results"][0]["message"] == "Order #1001 cancelled"
        await w.say("list orders")
        reply = await w.bot_says("Here are your orders")
        assert "#1001 Ada Lovelace: $89.50 (cancelled)" in reply["text"]
        conversation = await server.engine.store.load_conversation(w.welcome["session_id"])
        assert all(m["role"] != "tool" or "page" not in m["tool_call_id"] for m in conversation)
        assert len([f for f in w.frames if f["type"] == "card"]) == 1


async def test_a_declined_page_call_runs_nothing_and_the_bot_stays_quiet(tmp_path: Path) -> None:
    async with running(demo_app(), settings(tmp_path, sites=SITES)) as server, widget(server) as w:
        await w.hello()
        await w.send(CALL)
        card = await w.card("pending")
        await w.decide(card, "cancel")
        await w.update(card["card_id"], "cancelled")
        await w.quiet(0.3)
        assert not [f for f in w.frames if f["type"] in {"message", "message.end"}]
        statuses = [r["status"] for r in await server.engine.audit.rows(action="cancel_order")]
        assert statuses == ["pending_confirmation", "cancelled"]


async def test_a_site_that_lists_no_page_actions_refuses_them(tmp_path: Path) -> None:
    async with running(demo_app(), settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.send(CALL)
        error = await w.error("forbidden")
        assert error["ref"] == "page-1"
        rows = await server.engine.audit.rows(action="cancel_order")
        assert [(r["status"], r["decided_by"]) for r in rows] == [("refused", "auto")]


def test_a_page_action_the_app_does_not_have_stops_start_up(tmp_path: Path) -> None:
    sites = {"demo": Site("demo", ("http://127.0.0.1:*",), page_actions=("cancel_ordr",))}
    with pytest.raises(ConfigError, match=r"sites\.demo\.page_actions: cancel_ordr is not a"):
        demo_app().asgi(settings(tmp_path, sites=sites))


async def test_a_page_cannot_pile_up_open_cards(tmp_path: Path) -> None:
    async with running(demo_app(), settings(tmp_path, sites=SITES)) as server, widget(server) as w:
        await w.hello()
        for n in range(4):
            await w.send({**CALL, "client_id": f"page-{n}"})
        error = await w.error("rate_limited")
        # The calls race for the session's turn: whichever comes fourth is refused.
        assert error["ref"].startswith("page-")
        assert error["message"] == "3 calls from the page already wait for a decision"
        open_cards = await server.engine.store.session_cards(w.welcome["session_id"])
        assert len(open_cards) == 3


async def test_a_page_card_is_the_pages_the_chat_goes_on_around_it(tmp_path: Path) -> None:
    async with running(demo_app(), settings(tmp_path, sites=SITES)) as server, widget(server) as w:
        await w.hello()
        await w.send(CALL)
        card = await w.card("pending")
        await w.say("list orders")
        await w.bot_says("Here are your orders")
        # Still the page's to decide: a chat message withdraws only the bot's cards.
        assert (await server.engine.store.get_card(card["card_id"])).status == "pending"
        await w.decide(card)
        await w.update(card["card_id"], "done")


def test_a_page_action_with_a_session_sum_condition_stops_start_up(tmp_path: Path) -> None:
    from signoff import Signoff
    from tests.support import EchoCallBot

    app = Signoff(bot=EchoCallBot())

    @app.action(kind="write", when="session_sum('amount') > 100")
    async def refund(ctx: object, amount: float) -> None: ...

    sites = {"demo": Site("demo", ("http://127.0.0.1:*",), page_actions=("refund",))}
    with pytest.raises(ConfigError, match="session_sum\\(\\), which calls from the page"):
        app.asgi(settings(tmp_path, sites=sites))
