"""The demo shop: its actions, per-session data, and a deterministic rule-based bot."""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from signoff.app import Signoff
from signoff.config import LLMSettings
from signoff.core.actions import team
from signoff.core.conversation import (
    Conversation,
    Text,
    ToolCall,
    current_turn,
    tool_content,
)
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
HELP = (
    "I'm the demo shop assistant. Try:\n"
    "• list orders\n"
    "• cancel order 1001\n"
    "• cancel orders 1001 1002 1003\n"
    "• delete spam\n"
    "• refund 20 on order 1002 (or refund 250: a teammate must approve)\n"
    "• refund 60 on orders 1001 1002 (together over 100: a teammate approves)\n"
    "• note on order 1001: leave it at the door"
)
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


# The bot ------------------------------------------------------------------------------

Rule = Callable[[re.Match[str], dict[str, list[dict[str, Any]]]], list[Text | ToolCall]]


def _results(conversation: Conversation) -> dict[str, list[dict[str, Any]]]:
    """This turn's tool results, by the name of the action that produced them."""
    names: dict[str, str] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    for message in current_turn(conversation):
        for call in message.get("tool_calls") or []:
            names[call["id"]] = call["function"]["name"]
        if message.get("role") == "tool":
            name = names.get(message["tool_call_id"], "?")
            results.setdefault(name, []).append(tool_content(message))
    return results


def _outcome(results: list[dict[str, Any]], done: str, subject: str) -> str:
    status = results[0].get("status")
    if all(r.get("status") == "ok" for r in results):
        return done
    if status in {"declined", "already_declined"}:
        return f"Okay, I did not {subject}: {results[0].get('reason', 'it was declined')}."
    # The calls a failure stopped say "not run"; the failure itself is what to tell.
    errors = "; ".join(
        str(r["error"]) for r in results if r.get("error") and not r["error"].startswith("not run")
    )
    return f"I could not {subject}: {errors or 'it did not run'}."


def _list_orders(match: re.Match[str], results: dict[str, Any]) -> list[Text | ToolCall]:
    if "list_orders" not in results:
        return [ToolCall("list_orders")]
    lines = [
        f"#{o['order_id']} {o['customer']}: {money(o['total'])} ({o['status']})"
        for o in results["list_orders"][0]["result"]
    ]
    return [Text("Here are your orders:\n" + "\n".join(lines))]


def _cancellable(lookup: dict[str, Any]) -> bool:
    """Not already cancelled. A shipped order is still offered: whether it can be stopped
    is the shop's to say when the call runs, not the bot's to guess."""
    return lookup["status"] == "ok" and lookup["result"]["status"] != "cancelled"


def _cancel_orders(match: re.Match[str], results: dict[str, Any]) -> list[Text | ToolCall]:
    ids = [int(n) for n in re.findall(r"\d+", match.group("ids"))]
    if "get_order" not in results:
        return [Text("Let me look that up. ")] + [
            ToolCall("get_order", {"order_id": i}) for i in ids
        ]
    if "cancel_order" in results:
        offered = [r["result"]["order_id"] for r in results["get_order"] if _cancellable(r)]
        done = "Done: " + ", ".join(f"order #{i}" for i in offered) + " cancelled."
        return [Text(_outcome(results["cancel_order"], done, "cancel"))]
    missing = [r["error"] for r in results["get_order"] if r["status"] != "ok"]
    if missing:
        return [Text("I can't cancel that: " + "; ".join(missing) + ".")]
    orders = [r["result"] for r in results["get_order"]]
    # The lookup already says which are cancelled: offering those again would only fail.
    already = [
        f"order #{o['order_id']} is already cancelled" for o in orders if o["status"] == "cancelled"
    ]
    open_orders = [o for o in orders if o["status"] != "cancelled"]
    if not open_orders:
        return [Text("Nothing to cancel: " + "; ".join(already) + ".")]
    calls: list[Text | ToolCall] = [
        ToolCall(
            "cancel_order",
            {"order_id": o["order_id"], "customer": o["customer"], "total": o["total"]},
        )
        for o in open_orders
    ]
    note = (" (" + "; ".join(already) + ")") if already else ""
    return [Text(f"Please confirm below{note}."), *calls]


def _delete_spam(match: re.Match[str], results: dict[str, Any]) -> list[Text | ToolCall]:
    if "list_spam" not in results:
        return [ToolCall("list_spam")]
    spam = results["list_spam"][0]["result"]
    if "delete_spam" in results:
        done = f"Deleted {len(spam)} spam messages."
        return [Text(_outcome(results["delete_spam"], done, "delete the spam"))]
    if not spam:
        return [Text("The spam folder is already empty.")]
    return [
        Text(f"I found {len(spam)} messages in spam. "),
        ToolCall("delete_spam", {"message_ids": [m["id"] for m in spam]}),
    ]


def _refund(match: re.Match[str], results: dict[str, Any]) -> list[Text | ToolCall]:
    amount = float(match.group("amount"))
    ids = [int(n) for n in re.findall(r"\d+", match.group("ids"))]
    if "refund" in results:
        orders = ", ".join(f"#{i}" for i in ids)
        done = f"Refunded {money(amount)} on order{'s' if len(ids) > 1 else ''} {orders}."
        return [Text(_outcome(results["refund"], done, "refund"))]
    return [ToolCall("refund", {"order_id": i, "amount": amount}) for i in ids]


def _note(match: re.Match[str], results: dict[str, Any]) -> list[Text | ToolCall]:
    order_id, note = int(match.group("order")), match.group("note").strip()
    if "add_note" in results:
        return [Text(_outcome(results["add_note"], "Noted.", "add the note"))]
    return [ToolCall("add_note", {"order_id": order_id, "note": note})]


RULES: list[tuple[re.Pattern[str], Rule]] = [
    (re.compile(r"^\s*(list|show) (my )?orders\b", re.I), _list_orders),
    (re.compile(r"^\s*cancel orders? (?P<ids>\d+(?:[\s,and]+\d+)*)\s*$", re.I), _cancel_orders),
    (re.compile(r"^\s*delete (the )?spam\b", re.I), _delete_spam),
    (
        re.compile(
            r"^\s*refund \$?(?P<amount>\d+(?:\.\d{1,2})?) on orders? "
            r"(?P<ids>\d+(?:[\s,and]+\d+)*)\s*$",
            re.I,
        ),
        _refund,
    ),
    (re.compile(r"^\s*note on order (?P<order>\d+)\s*:\s*(?P<note>.+)$", re.I | re.S), _note),
]


class DemoBot:
    """Reads the last visitor message and this turn's results; no model, fully predictable."""

    async def respond(self, conversation: Conversation) -> AsyncIterator[Text | ToolCall]:
        said = next((m["content"] for m in reversed(conversation) if m.get("role") == "user"), "")
        for pattern, rule in RULES:
            match = pattern.match(said)
            if match:
                for item in rule(match, _results(conversation)):
                    yield item
                return
        if said.strip().lower() in {"help", "hi", "hello", "?"}:
            yield Text(HELP)
        else:
            yield Text(f"Sorry, I don't know how to “{said.strip()}”.\n\n{HELP}")


def demo_app(llm: LLMSettings | None = None) -> Signoff:
    """The demo shop, with the rule-based bot, or with the model ``llm`` names."""
    app = Signoff(bot=DemoBot())
    register_shop(app, DemoShop())
    if llm is not None:
        # Imported here: the rule-based demo does not need the openai package loaded.
        from signoff.bots.llm import DEFAULT_SYSTEM_PROMPT, OpenAIBot

        prompt = f"{DEFAULT_SYSTEM_PROMPT} {DEMO_PROMPT}"
        app.use_bot(OpenAIBot.from_settings(app.registry, llm, default_prompt=prompt))
    return app
