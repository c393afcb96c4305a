"""The demo's rule-based bot: it reads the visitor's last message and this turn's results,
no model, fully predictable; every phrase of the demo page goes through it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from signoff.core.conversation import (
    Conversation,
    Text,
    ToolCall,
    current_turn,
    tool_content,
)
from signoff.core.templates import money

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
