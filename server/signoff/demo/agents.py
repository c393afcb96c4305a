"""The demo shop through an agent framework's adapter, offline: ``signoff demo --bot
pydantic-ai``. The framework's own test model stands in for a real one, scripted by the
demo's rules, so every phrase of the demo page, card flow included, goes through the
adapter exactly as a model's answers would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from signoff.config import ConfigError
from signoff.core.actions import Registry
from signoff.core.conversation import Conversation, Text, assistant_message, tool_message
from signoff.demo.bot import DemoBot
from signoff.demo.shop import DEMO_PROMPT
from signoff.extras import missing_extra

BOTS = ("rules", "pydantic-ai")


def pydantic_ai_bot(registry: Registry) -> Any:
    """An ``AgentBot`` whose agent's model is Pydantic AI's ``FunctionModel``, scripted."""
    missing = missing_extra("pydantic-ai", "signoff demo --bot pydantic-ai")
    if missing:
        raise ConfigError(missing)
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

    from signoff.adapters.pydantic_ai import AgentBot

    rules = DemoBot()

    async def answer(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | dict[int, DeltaToolCall]]:
        calls: dict[int, DeltaToolCall] = {}
        async for item in rules.respond(conversation_of(messages)):
            if isinstance(item, Text):
                yield item.text
            else:
                calls[len(calls)] = DeltaToolCall(item.name, json.dumps(item.args))
        if calls:
            yield calls

    agent = Agent(FunctionModel(stream_function=answer), instructions=DEMO_PROMPT)
    return AgentBot(agent, registry)


def conversation_of(messages: list[Any]) -> Conversation:
    """Pydantic AI's messages back in signoff's form, for the demo's rules to read."""
    from pydantic_ai.messages import (
        ModelRequest,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )

    conversation: Conversation = []
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart):
                    conversation.append({"role": "user", "content": str(part.content)})
                elif isinstance(part, ToolReturnPart):
                    content = dict(part.content) if isinstance(part.content, dict) else {}
                    conversation.append(tool_message(part.tool_call_id, content))
            continue
        text = "".join(p.content for p in message.parts if isinstance(p, TextPart))
        calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
        reply = assistant_message(text, [])
        if calls:
            reply["tool_calls"] = [
                {
                    "id": call.tool_call_id,
                    "type": "function",
                    "function": {"name": call.tool_name, "arguments": call.args_as_json_str()},
                }
                for call in calls
            ]
        conversation.append(reply)
    return conversation
