"""The conversation: a list of JSON messages in the shape LLM chat APIs use.

It is the whole state of a turn, so a paused turn resumes from it after a
restart, on any instance. A bot step yields ``Text`` and ``ToolCall`` items.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

Conversation = list[dict[str, Any]]

# The most of a conversation a turn loads and saves: older turns are dropped whole, so each
# turn costs the same however long the visitor goes on.
MAX_MESSAGES = 120
MAX_CHARS = 200_000


@dataclass(frozen=True)
class Text:
    """A piece of the bot's reply, streamed to the widget as it comes."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """The bot asks to run an action. ``id`` may be empty; the engine assigns one.

    ``error`` marks a call the bot could not read from its model (arguments that are
    not JSON, say): the engine refuses it with that error, and it never runs.
    ``needs_card`` asks for a card even where the action would run at once: an agent
    framework's own approval flag on the tool, which signoff never loosens.
    """

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    error: str = ""
    needs_card: bool = False


def user_message(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant_message(text: str, calls: list[ToolCall]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.args)},
            }
            for call in calls
        ]
    return message


def tool_message(tool_call_id: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": tool_call_id, "content": json.dumps(content)}


def tool_content(message: dict[str, Any]) -> dict[str, Any]:
    try:
        content = json.loads(message.get("content") or "{}")
    except json.JSONDecodeError:
        return {}
    return content if isinstance(content, dict) else {}


def current_turn(conversation: Conversation) -> Conversation:
    """The messages since the visitor's last message."""
    last = _last_user_message(conversation)
    return conversation if last is None else conversation[last + 1 :]


def _last_user_message(conversation: Conversation) -> int | None:
    for index in range(len(conversation) - 1, -1, -1):
        if conversation[index].get("role") == "user":
            return index
    return None


def declined_in_turn(conversation: Conversation) -> tuple[set[str], int]:
    """Hashes of the calls declined in this turn, and how often the bot re-proposed them."""
    declined: set[str] = set()
    repeated_steps: set[int] = set()  # a re-proposed chain has one result per call
    step = -1
    for index, message in enumerate(current_turn(conversation)):
        if message.get("role") == "assistant":
            step = index
        if message.get("role") != "tool":
            continue
        content = tool_content(message)
        if content.get("status") in {"declined", "rejected", "expired"} and content.get(
            "args_hash"
        ):
            declined.add(content["args_hash"])
        if content.get("status") == "already_declined":
            repeated_steps.add(step)
    return declined, len(repeated_steps)


def call_ids(conversation: Conversation) -> set[str]:
    """The ids of every tool call the conversation holds."""
    return {c.get("id") for m in conversation for c in m.get("tool_calls") or ()}


def pending_tool_calls(conversation: Conversation) -> list[str]:
    """Ids of tool calls in the last assistant message that have no result yet."""
    answered = set()
    for message in reversed(conversation):
        if message.get("role") == "tool":
            answered.add(message.get("tool_call_id"))
        elif message.get("role") == "assistant":
            ids = [c["id"] for c in message.get("tool_calls") or []]
            return [i for i in ids if i not in answered]
        else:
            return []
    return []


def ran_calls(
    conversation: Conversation, names: Collection[str]
) -> dict[str, list[dict[str, Any]]]:
    """The args of every call of the ``names`` actions in the conversation that ran and
    succeeded, by action."""
    calls = [
        call
        for message in conversation
        for call in message.get("tool_calls") or ()
        if (call.get("function") or {}).get("name") in names
    ]
    ids = {call.get("id") for call in calls}
    succeeded = {
        message.get("tool_call_id")
        for message in conversation
        if message.get("role") == "tool"
        and message.get("tool_call_id") in ids
        and tool_content(message).get("status") == "ok"
    }
    ran: dict[str, list[dict[str, Any]]] = {}
    for call in calls:
        if call.get("id") not in succeeded:
            continue
        try:
            args = json.loads(call["function"].get("arguments") or "{}")
        except json.JSONDecodeError:
            continue
        if isinstance(args, dict):
            ran.setdefault(call["function"]["name"], []).append(args)
    return ran


def _chars(conversation: Conversation) -> int:
    """``_size`` summed, done cheaply: it is asked at every save."""
    return sum(
        _size(m) if "tool_calls" in m else len(m.get("content") or "") + 32 for m in conversation
    )


def _size(message: dict[str, Any]) -> int:
    """About how many characters a message takes: its text and its calls' arguments."""
    size = len(message.get("content") or "")
    for call in message.get("tool_calls") or ():
        size += len((call.get("function") or {}).get("arguments") or "") + 64
    return size + 32


def window(
    conversation: Conversation, max_messages: int | None = None, max_chars: int | None = None
) -> Conversation:
    """The newest part of the conversation, within the bounds, in whole turns.

    A turn (a visitor's message and everything after it) is kept or dropped whole, so tool
    calls stay with their results and a paused turn's pending calls with their step; the
    current turn is always kept, whatever its size. The bounds default to ``MAX_MESSAGES``
    and ``MAX_CHARS``.
    """
    max_messages = MAX_MESSAGES if max_messages is None else max_messages
    max_chars = MAX_CHARS if max_chars is None else max_chars
    if len(conversation) <= max_messages:
        if _chars(conversation) <= max_chars:
            return conversation
    else:
        # Past the count, as every save of a long conversation is: the turns that fit by
        # count are found by index, and their size summed once, instead of a size per
        # message on the way back. The same cut, whenever the count binds first.
        start = len(conversation) - max_messages
        first = next(
            (i for i in range(start, len(conversation)) if conversation[i].get("role") == "user"),
            None,
        )
        if first is None:  # the current turn alone is past the count: it is kept
            last = _last_user_message(conversation)
            return conversation if last is None else conversation[last:]
        if _chars(conversation[first:]) <= max_chars:
            return conversation[first:]
    keep_from = None
    count = chars = 0
    for index in range(len(conversation) - 1, -1, -1):
        count += 1
        chars += _size(conversation[index])
        if conversation[index].get("role") != "user":
            continue
        if keep_from is not None and (count > max_messages or chars > max_chars):
            break
        keep_from = index
    return conversation[keep_from:] if keep_from is not None else conversation
