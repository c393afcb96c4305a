"""Every demo phrase, over a real WebSocket against the running app."""

from __future__ import annotations

from tests.support import Server, widget


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
            }
        ]
        await w.decide(card)
        done = await w.update(card["card_id"], "done")
        assert done["results"][0]["status"] == "done"
        assert done["decided_by"].startswith("user:")
        await w.bot_says("Done: order #1001 cancelled.")
        await w.say("list orders")
        reply = await w.bot_says("Here are your orders")
        assert "#1001 Ada Lovelace: $89.50 (cancelled)" in reply["text"]
