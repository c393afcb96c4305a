"""A bot may take each step's context: whose conversation it is. Bots that take the
conversation alone are called as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from signoff import BotContext, Signoff, Text, ToolCall, sign_user_token, team
from signoff.engine.context import ActionContext
from tests.support import SECRET, EchoCallBot, running, settings, widget


class KeyedBot:
    """Keeps memory of its own by conversation id, as an agent's thread would be."""

    def __init__(self) -> None:
        self.contexts: list[BotContext] = []
        self.threads: dict[str, int] = {}

    async def respond(
        self, conversation: list[dict[str, Any]], context: BotContext
    ) -> AsyncIterator[Text | ToolCall]:
        self.contexts.append(context)
        if conversation[-1]["role"] == "user":
            self.threads[context.conversation_id] = self.threads.get(context.conversation_id, 0) + 1
            yield ToolCall("whoami")
            return
        yield Text(f"turn {self.threads[context.conversation_id]} on {context.site}")


async def test_each_step_knows_whose_conversation_it_is(tmp_path: Path) -> None:
    bot = KeyedBot()
    app = Signoff(bot=bot)

    @app.action(kind="read")
    async def whoami(ctx: ActionContext) -> str:
        """Who the visitor is."""
        return ctx.user_id

    async with running(app, settings(tmp_path)) as server, widget(server) as w:
        welcome = await w.hello(user_token=sign_user_token(SECRET, "alice", 60))
        await w.say("hello")
        await w.bot_says("turn 1 on demo")
        await w.say("again")
        await w.bot_says("turn 2 on demo")
    expected = BotContext(
        session_id=welcome["session_id"],
        user_id="alice",
        site="demo",
        conversation_id=bot.contexts[0].conversation_id,
    )
    # Two steps a turn (the call, then the answer to its result), all in one conversation.
    assert bot.contexts == [expected] * 4
    assert expected.conversation_id.startswith("conv_")


async def test_a_when_function_sees_whose_conversation_a_call_is_in(tmp_path: Path) -> None:
    app = Signoff(bot=EchoCallBot(calls=("refund",)))

    def team_unless_vip(args: dict[str, Any], context: BotContext | None) -> bool:
        return context is None or not context.user_id.startswith("vip-")

    @app.action(kind="write", approver=team("support-lead", when=team_unless_vip))
    async def refund(ctx: ActionContext, target: str) -> dict[str, Any]:
        """Refund an order."""
        return {"refunded": target}

    async with running(app, settings(tmp_path)) as server:
        for user, approver in (("vip-ann", "user"), ("bob", "team")):
            async with widget(server) as w:
                await w.hello(user_token=sign_user_token(SECRET, user, 60))
                await w.say("refund 1001")
                card = await w.card()
                assert card["approver"] == approver, user
