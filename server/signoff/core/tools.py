"""Actions and the conversation in the shape of the OpenAI Chat Completions API.

Pure: tool definitions from actions, the messages a model is sent, and tool
calls put together from streamed fragments. The adapter in
``signoff.bots.llm`` does the talking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from signoff.core.actions import Action, Kind
from signoff.core.conversation import Conversation, ToolCall

# Told to the model for every action that may open a card, so it calls the tool instead
# of asking "are you sure?" in text, and waits for the outcome.
GATED_NOTE = (
    "Calling this does not run it at once: a person confirms or declines it first, "
    "and you get the outcome as the tool result."
)


def tool_definition(action: Action) -> dict[str, Any]:
    """The action as a function tool: its JSON Schema from the signature's type hints."""
    parameters = action.args_model.model_json_schema()
    parameters.pop("title", None)
    description = action.description
    if action.kind is not Kind.READ and action.confirm:
        description = f"{description}\n\n{GATED_NOTE}" if description else GATED_NOTE
    return {
        "type": "function",
        "function": {"name": action.name, "description": description, "parameters": parameters},
    }


def chat_messages(conversation: Conversation, system_prompt: str) -> list[dict[str, Any]]:
    """What the model is sent: the system prompt, then the conversation.

    An assistant message with neither text nor calls (a step that said nothing) is left
    out: chat APIs refuse it.
    """
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.extend(
        message
        for message in conversation
        if message.get("role") != "assistant" or message.get("content") or message.get("tool_calls")
    )
    return messages


@dataclass
class _Partial:
    id: str
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Tool calls put together from streamed ``delta.tool_calls`` fragments.

    Fragments are matched by ``index``; a fragment with a new ``id`` at an index
    already taken starts another call (some servers number every call 0), and a
    fragment without an index continues the latest call. Names and arguments are
    concatenated, as the API streams them.
    """

    def __init__(self) -> None:
        self._calls: list[_Partial] = []
        self._by_index: dict[int, _Partial] = {}

    def add(
        self, index: int | None, id: str | None, name: str | None, arguments: str | None
    ) -> None:
        current = self._by_index.get(index) if index is not None else None
        if current is None and index is None and self._calls:
            current = self._calls[-1]
        if current is None or (id and current.id and id != current.id):
            current = _Partial(id or "")
            self._calls.append(current)
            if index is not None:
                self._by_index[index] = current
        current.id = current.id or id or ""
        current.name += name or ""
        if arguments:
            current.arguments.append(arguments)

    def calls(self) -> list[ToolCall]:
        """The calls, in the order they began. Arguments that are not one JSON object make
        a call with an ``error``, which the engine refuses and reports to the model."""
        return [_finished(partial) for partial in self._calls]


def _finished(partial: _Partial) -> ToolCall:
    text = "".join(partial.arguments).strip() or "{}"
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"the arguments are not valid JSON ({exc.msg} at character {exc.pos})"
        return ToolCall(partial.name, {}, partial.id, error=f"{partial.name}: {problem}")
    if not isinstance(args, dict):
        problem = "the arguments must be one JSON object"
        return ToolCall(partial.name, {}, partial.id, error=f"{partial.name}: {problem}")
    return ToolCall(partial.name, args, partial.id)
