"""Bots: ``async def respond(conversation) -> AsyncIterator[Text | ToolCall]``, one step."""

from signoff.core.conversation import Text, ToolCall
from signoff.engine.turns import Bot

__all__ = ["Bot", "Text", "ToolCall"]
