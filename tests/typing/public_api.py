"""Checked by mypy in `make lint`, never run: what a user's type checker sees of signoff's
public API (signoff ships py.typed). An assert_type that fails is a lint error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, assert_type

from signoff import ActionContext, BotContext, Signoff, Text, ToolCall

app = Signoff()


@app.action(kind="destructive", message="Cancel order #{{ order_id }}?")
async def cancel_order(ctx: ActionContext, order_id: int) -> dict[str, int]:
    return {"order_id": order_id}


@app.action
async def add_note(ctx: ActionContext, text: str) -> None:
    return None


async def check(ctx: ActionContext) -> None:
    assert_type(await cancel_order(ctx, 1001), dict[str, int])
    assert_type(await add_note(ctx, "hello"), None)


class PlainBot:
    async def respond(self, conversation: list[dict[str, Any]]) -> AsyncIterator[Text | ToolCall]:
        yield Text("hi")


class ContextBot:
    async def respond(
        self, conversation: list[dict[str, Any]], context: BotContext
    ) -> AsyncIterator[Text | ToolCall]:
        yield Text(f"hi from {context.site}")


# Either shape of bot is a bot.
Signoff(bot=PlainBot())
Signoff(bot=ContextBot())
