"""What a bot is to the engine: one step of a turn, ``respond``, that yields the reply's
text as it comes and the calls it wants made.

A bot may take the step's context too (``respond(conversation, context)``): whose
conversation it is, so an agent can key memory of its own by it or choose a model per
site. Bots that take the conversation alone keep working.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from signoff.core.conversation import Conversation, Text, ToolCall

Reply = AsyncIterator[Text | ToolCall]

# What a bot says for a model's answer with neither text nor calls.
NO_ANSWER = "Sorry, I have no answer to that. Could you put it another way?"


@dataclass(frozen=True)
class BotContext:
    """Whose conversation a step is in; the same for every step of one conversation."""

    session_id: str
    user_id: str  # from the host's user token, or an anonymous ``anon_…`` id
    site: str
    conversation_id: str


class PlainBot(Protocol):
    def respond(self, conversation: Conversation) -> Reply: ...


class ContextBot(Protocol):
    def respond(self, conversation: Conversation, context: BotContext) -> Reply: ...


Bot = PlainBot | ContextBot
Step = Callable[[Conversation, BotContext], Reply]


def step_of(bot: Bot) -> Step:
    """How the engine calls ``bot``: with the context if its ``respond`` takes one."""
    if len(inspect.signature(bot.respond).parameters) >= 2:
        return bot.respond  # type: ignore[return-value]
    plain = bot.respond

    def step(conversation: Conversation, context: BotContext) -> Reply:
        return plain(conversation)  # type: ignore[call-arg]

    return step
