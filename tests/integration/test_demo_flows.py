"""Every demo phrase, over a real WebSocket against the running app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from signoff.core.teammates import Channel, Teammate, Verdict
from signoff.demo import demo_app
from signoff.demo.agents import BOTS
from signoff.engine.turns import NOT_WHILE_WAITING
from tests.support import Server, running, settings, widget

# Every guarantee holds on each store.
pytestmark = pytest.mark.usefixtures("each_store")


@pytest.fixture(params=BOTS)
async def demo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    """The demo shop with each of its bots: the rules themselves, and the same rules as a
    scripted model behind an agent framework's adapter (signoff demo --bot ...)."""
    async with running(demo_app(bot=request.param), settings(tmp_path)) as server:
        yield server


async def test_list_orders_is_read_only_and_opens_no_card(demo: Server) -> None:
    async with widget(demo) as w:
        await w.hello()
        await w.say("list orders")
        reply = await w.bot_says("Here are your orders")
        assert "#1001 Ada Lovelace: $89.50 (open)" in reply["text"]
        assert not [f for f in w.frames if f["type"] == "card"]


async def test_cancel_order_confirm_runs_once_and_bot_goes_on(demo: Server) -> None:
    async with widget(demo) as w:
        await w.hello()
        await w.say("cancel order 1001")
        card = await w.card("pending")
        assert card["kind"] == "destructive"
        assert card["approver"] == "user"
        assert card["actions"] == [
            {
                "action": "cancel_order",
                "title": "Cancel order",
                "args": {"order_id": 1001, "customer": "Ada Lovelace", "total": 89.5},
                "effect": "Cancel order #1001 for Ada Lovelace, total $89.50?",
                "fields": [
                    {"name": "order_id", "label": "Order", "value": "#1001"},
                    {"name": "customer", "label": "Customer", "value": "Ada Lovelace"},
                    {"name": "total", "label": "Total", "value": "$89.50"},
                ],
            }
        ]
        # The action names its buttons: "Confirm" / "Cancel" would be ambiguous here.
        assert (card["confirm_label"], card["cancel_label"]) == ("Cancel order", "Keep order")
        await w.decide(card)
        done = await w.update(card["card_id"], "done")
        assert done["results"][0]["status"] == "done"
        assert done["results"][0]["message"] == "Order #1001 cancelled"
        assert done["decided_by"].startswith("user:")
        await w.bot_says("Done: order #1001 cancelled.")
        await w.say("list orders")
        reply = await w.bot_says("Here are your orders")
        assert "#1001 Ada Lovelace: $89.50 (cancelled)" in reply["text"]


async def test_an_order_already_cancelled_is_not_offered_again(demo: Server) -> None:
    async with widget(demo) as w:
        await w.hello()
        await w.say("cancel order 1001")
        await w.decide(await w.card("pending"))
        await w.bot_says("Done: order #1001 cancelled.")
        await w.say("cancel order 1001")
        await w.bot_says("Nothing to cancel: order #1001 is already cancelled.")
        await w.say("cancel orders 1001 1002")
        await w.bot_says("Please confirm below (order #1001 is already cancelled).")
        card = await w.card("pending")
        assert [a["args"]["order_id"] for a in card["actions"]] == [1002]
        await w.decide(card)
        await w.bot_says("Done: order #1002 cancelled.")
        assert len([f for f in w.frames if f["type"] == "card"]) == 2


async def test_cancel_orders_makes_one_chain_card_confirmed_all_at_once(demo: Server) -> None:
    async with widget(demo) as w:
        await w.hello()
        await w.say("cancel orders 1001 1002 1003")
        card = await w.card("pending")
        assert card["title"] == "Confirm 3 actions"
        assert [a["args"]["order_id"] for a in card["actions"]] == [1001, 1002, 1003]
        assert len([f for f in w.frames if f["type"] == "card"]) == 1
        await w.decide(card)
        done = await w.update(card["card_id"], "done")
        assert [r["status"] for r in done["results"]] == ["done", "done", "done"]
        await w.bot_says("Done: order #1001, order #1002, order #1003 cancelled.")


async def test_chain_stops_at_the_first_failure_and_says_which(demo: Server) -> None:
    async with widget(demo) as w:
        await w.hello()
        # 1004 has shipped: the lookups succeed but cancelling it fails.
        await w.say("cancel orders 1001 1004 1003")
        card = await w.card("pending")
        await w.decide(card)
        failed = await w.update(card["card_id"], "failed")
        assert [r["status"] for r in failed["results"]] == ["done", "failed", "skipped"]
        assert "shipped" in failed["results"][1]["error"]
        await w.say("list orders")
        reply = await w.bot_says("Here are your orders")
        assert "#1001 Ada Lovelace: $89.50 (cancelled)" in reply["text"]
        assert "#1003 Alan Turing: $34.99 (open)" in reply["text"]


async def test_delete_spam_runs_the_read_first_and_the_card_has_the_real_count(
    demo: Server,
) -> None:
    async with widget(demo) as w:
        await w.hello()
        await w.say("delete spam")
        card = await w.card("pending")
        assert card["actions"][0]["effect"] == "Delete 7 spam messages for good?"
        assert card["actions"][0]["args"]["message_ids"] == list(range(501, 508))
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says("Deleted 7 spam messages.")
        rows = await demo.engine.audit.rows(session_id=w.welcome["session_id"])
        assert [(r["action"], r["status"], r["decided_by"]) for r in rows] == [
            ("list_spam", "success", "auto"),
            ("delete_spam", "pending_confirmation", None),
            ("delete_spam", "success", f"user:{w.welcome['user_id']}"),
        ]


async def test_small_refund_is_the_visitors_card_large_one_waits_for_a_teammate(
    demo: Server,
) -> None:
    async with widget(demo) as w:
        await w.hello()
        await w.say("refund 20 on order 1002")
        small = await w.card("pending")
        assert (small["approver"], small["actions"][0]["effect"]) == (
            "user",
            "Refund $20.00 on order #1002?",
        )
        await w.decide(small)
        await w.update(small["card_id"], "done")
        await w.say("refund 250 on order 1002")
        large = await w.card("waiting")
        assert (large["approver"], large["level"], large["role"]) == ("team", 1, "support-lead")
        # The visitor cannot approve a teammate's card.
        await w.decide(large)
        assert (await w.error("forbidden"))["ref"] == large["card_id"]
        stored = await demo.engine.store.get_card(large["card_id"])
        assert stored.status == "waiting"


async def test_each_session_has_its_own_shop(demo: Server) -> None:
    async with widget(demo) as first, widget(demo) as second:
        await first.hello()
        await second.hello()
        await first.say("cancel order 1001")
        await first.decide(await first.card("pending"))
        await first.bot_says("cancelled")
        await second.say("list orders")
        reply = await second.bot_says("Here are your orders")
        assert "#1001 Ada Lovelace: $89.50 (open)" in reply["text"]


async def test_freeform_note_is_not_stored_in_plaintext(demo: Server, tmp_path: object) -> None:
    note = "ring twice, the code is 4471"
    async with widget(demo) as w:
        await w.hello()
        await w.say(f"note on order 1001: {note}")
        card = await w.card("pending")
        assert card["actions"][0]["args"]["note"] == note  # the visitor sees their words
        await w.decide(card)
        await w.update(card["card_id"], "done")
    [row] = await demo.engine.audit.rows(action="add_note", status="success")
    assert row["params"]["note"]["length"] == len(note)
    assert note not in str(row)
    database = demo.engine.audit.engine.url.database
    await demo.engine.audit.close()
    assert note.encode() not in await asyncio.to_thread(Path(database).read_bytes)


def assert_well_formed(conversation: list[dict[str, Any]]) -> None:
    """Every tool call is answered once, by the tool messages right after its message."""
    for index, message in enumerate(conversation):
        asked = [c["id"] for c in message.get("tool_calls") or []]
        if not asked:
            continue
        answers = []
        for after in conversation[index + 1 :]:
            if after["role"] != "tool":
                break
            answers.append(after["tool_call_id"])
        assert answers == asked, (asked, answers)


async def test_while_a_teammate_decides_look_ups_are_answered_and_the_request_waits(
    demo: Server,
) -> None:
    lead = Teammate("lena", frozenset({"support-lead"}), Channel.DASHBOARD)
    async with widget(demo) as w:
        await w.hello()
        session_id = w.welcome["session_id"]
        await w.say("refund 250 on order 1002")
        card = await w.card("waiting")
        await w.say("list orders")
        reply = await w.bot_says("Here are your orders")
        assert "#1002 Grace Hopper: $312.00 (open)" in reply["text"]
        # Anything that would need a card waits until the teammate has decided.
        await w.say("cancel order 1001")
        await w.bot_says("I could not cancel: " + NOT_WHILE_WAITING)
        assert len([f for f in w.frames if f["type"] == "card"]) == 1
        assert (await demo.engine.store.get_card(card["card_id"])).status == "waiting"
        paused = await demo.engine.store.load_conversation(session_id)
        assert "list orders" not in str(paused)  # the asides are not the turn's

        await demo.engine.team_decide(card["card_id"], Verdict.APPROVE, lead)
        await w.update(card["card_id"], "done")
        await w.bot_says("Refunded $250.00 on order #1002.")
        assert_well_formed(await demo.engine.store.load_conversation(session_id))
    rows = await demo.engine.audit.rows(action="cancel_order")
    assert [(r["status"], r["error"]) for r in rows] == [("refused", NOT_WHILE_WAITING)]
    assert [r["status"] for r in await demo.engine.audit.rows(action="list_orders")] == ["success"]


async def test_refunds_split_over_one_card_wait_for_a_teammate_together(demo: Server) -> None:
    """Two refunds of 60 are each under 100, but the card holds 120: a teammate decides."""
    async with widget(demo) as w:
        await w.hello()
        await w.say("refund 20 on order 1002")
        alone = await w.card("pending")
        assert alone["approver"] == "user"
        await w.decide(alone, "cancel")
        await w.say("refund 60 on orders 1001 1002")
        card = await w.card("waiting")
        assert card["approver"] == "team" and card["role"] == "support-lead"
        assert [(a["action"], a["args"]) for a in card["actions"]] == [
            ("refund", {"order_id": 1001, "amount": 60.0}),
            ("refund", {"order_id": 1002, "amount": 60.0}),
        ]
