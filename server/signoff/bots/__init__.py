"""Bots: ``async def respond(conversation[, context]) -> AsyncIterator[Text | ToolCall]``,
one step of a turn (signoff.core.bot)."""

from signoff.core.bot import Bot, BotContext
from signoff.core.conversation import Text, ToolCall

__all__ = ["Bot", "BotContext", "Text", "ToolCall"]
