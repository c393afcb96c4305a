"""The demo shop's data and actions: orders, refunds, notes and a spam folder, a private
copy for each session."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

from signoff.app import Signoff
from signoff.core.actions import team
from signoff.core.templates import money
from signoff.engine.context import ActionContext

ORDERS = {
    1001: {"customer": "Ada Lovelace", "total": 89.5, "status": "open"},
    1002: {"customer": "Grace Hopper", "total": 312.0, "status": "open"},
    1003: {"customer": "Alan Turing", "total": 34.99, "status": "open"},
    1004: {"customer": "Katherine Johnson", "total": 120.0, "status": "shipped"},
}
SPAM = [
    {"id": 501 + i, "subject": s}
    for i, s in enumerate(
        [
            "You won a cruise!!!",
            "Cheap watches",
            "Re: your invoice (urgent)",
            "Hot singles near the warehouse",
            "Claim your prize",
            "Crypto doubling service",
            "Final notice: extended warranty",
        ]
    )
]
# Added to the LLM bot's default system prompt when the demo runs on a model.
DEMO_PROMPT = (
    "You serve the Acme demo shop: its orders, refunds, order notes and the spam folder. "
    "Amounts are in dollars. Look an order up before you cancel or refund it."
)


class DemoShop:
    """Each session gets its own copy of the shop, so visitors never see each other.

    The least recently used copies are dropped past ``max_sessions``: a demo
    that runs for days stays small.
    """

    def __init__(self, max_sessions: int = 1000) -> None:
        self.max_sessions = max_sessions
        self._data: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def of(self, ctx: ActionContext) -> dict[str, Any]:
        if ctx.session_id not in self._data:
            self._data[ctx.session_id] = {
                "orders": copy.deepcopy(ORDERS),
                "spam": copy.deepcopy(SPAM),
                "refunds": [],
                "notes": [],
            }
            while len(self._data) > self.max_sessions:
                self._data.popitem(last=False)
        self._data.move_to_end(ctx.session_id)
        return self._data[ctx.session_id]


def register_shop(app: Signoff, shop: DemoShop) -> None:
    def order(ctx: ActionContext, order_id: int) -> dict[str, Any]:
        found = shop.of(ctx)["orders"].get(order_id)
        if found is None:
            raise LookupError(f"there is no order {order_id}")
        return found

    @app.action(kind="read")
    async def list_orders(ctx: ActionContext) -> list[dict[str, Any]]:
        """List the shop's orders."""
        return [{"order_id": k, **v} for k, v in shop.of(ctx)["orders"].items()]

    @app.action(kind="read")
    async def get_order(ctx: ActionContext, order_id: int) -> dict[str, Any]:
        """Look up one order."""
        return {"order_id": order_id, **order(ctx, order_id)}

    @app.action(
        kind="destructive",
        message="Cancel order #{{ order_id }} for {{ customer }}, total {{ total|money }}?",
        labels={"order_id": "Order"},
        formats={"order_id": "#{{ order_id }}", "total": "{{ total|money }}"},
        result_message="Order #{{ order_id }} cancelled",
        confirm_label="Cancel order",
        cancel_label="Keep order",
    )
    async def cancel_order(
        ctx: ActionContext, order_id: int, customer: str, total: float
    ) -> dict[str, Any]:
        """Cancel an order. The customer is told by email."""
        found = order(ctx, order_id)
        if found["status"] != "open":
            raise ValueError(f"order {order_id} is {found['status']} and cannot be cancelled")
        found["status"] = "cancelled"
        return {"order_id": order_id, "status": "cancelled"}

    @app.action(kind="read")
    async def list_spam(ctx: ActionContext) -> list[dict[str, Any]]:
        """List the messages in the spam folder."""
        return list(shop.of(ctx)["spam"])

    @app.action(
        kind="destructive",
        message="Delete {{ message_ids|length }} spam messages for good?",
        labels={"message_ids": "Messages"},
        result_message="Deleted {{ result.deleted|plural('message') }}",
        confirm_label="Delete for good",
    )
    async def delete_spam(ctx: ActionContext, message_ids: list[int]) -> dict[str, Any]:
        """Permanently delete messages from the spam folder."""
        data = shop.of(ctx)
        before = len(data["spam"])
        data["spam"] = [m for m in data["spam"] if m["id"] not in set(message_ids)]
        return {"deleted": before - len(data["spam"])}

    @app.action(
        kind="write",
        message="Refund {{ amount|money }} on order #{{ order_id }}?",
        labels={"order_id": "Order"},
        formats={"order_id": "#{{ order_id }}", "amount": "{{ amount|money }}"},
        result_message="Refunded {{ amount|money }} on order #{{ order_id }}",
        # Counted over the whole card: two refunds of 60 together wait for a teammate.
        approver=team("support-lead", when="card_sum('amount') > 100"),
    )
    async def refund(ctx: ActionContext, order_id: int, amount: float) -> dict[str, Any]:
        """Refund part or all of an order to the customer's card."""
        found = order(ctx, order_id)
        if amount <= 0 or amount > found["total"]:
            raise ValueError(f"a refund must be between 0 and {money(found['total'])}")
        shop.of(ctx)["refunds"].append({"order_id": order_id, "amount": amount})
        return {"order_id": order_id, "refunded": amount}

    @app.action(
        kind="write",
        message="Add a note to order #{{ order_id }}: {{ note }}",
        freeform=["note"],
        labels={"order_id": "Order"},
        formats={"order_id": "#{{ order_id }}"},
        result_message="Note added to order #{{ order_id }}",
    )
    async def add_note(ctx: ActionContext, order_id: int, note: str) -> dict[str, Any]:
        """Add a note that the warehouse sees on the order."""
        order(ctx, order_id)
        shop.of(ctx)["notes"].append({"order_id": order_id, "note": note})
        return {"order_id": order_id, "noted": True}
