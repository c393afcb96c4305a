"""Chat Completions shapes: tool definitions, the messages sent, streamed tool calls."""

from __future__ import annotations

import json
from typing import Any

from signoff.core.actions import make_action
from signoff.core.conversation import ToolCall, assistant_message, tool_message, user_message
from signoff.core.tools import GATED_NOTE, ToolCallAssembler, chat_messages, tool_definition


async def cancel_order(ctx: Any, order_id: int, reason: str = "asked") -> dict[str, Any]:
    """Cancel an order. The customer is told by email."""
    return {}


async def delete_spam(ctx: Any, message_ids: list[int]) -> dict[str, Any]:
    return {}


async def list_orders(ctx: Any) -> list[Any]:
    """List the shop's orders."""
    return []


def test_a_tool_definition_has_the_signature_as_json_schema() -> None:
    tool = tool_definition(make_action(cancel_order, kind="destructive"))
    assert tool["type"] == "function"
    function = tool["function"]
    assert function["name"] == "cancel_order"
    assert function["description"] == (
        f"Cancel an order. The customer is told by email.\n\n{GATED_NOTE}"
    )
    parameters = function["parameters"]
    assert parameters["type"] == "object"
    assert parameters["required"] == ["order_id"]
    assert parameters["properties"]["order_id"]["type"] == "integer"
    assert parameters["properties"]["reason"]["default"] == "asked"
    assert parameters["additionalProperties"] is False
    assert "title" not in parameters
    json.dumps(tool)  # plain JSON, ready to send


def test_nested_hints_become_nested_schemas() -> None:
    parameters = tool_definition(make_action(delete_spam, kind="destructive"))["function"][
        "parameters"
    ]
    assert parameters["properties"]["message_ids"]["type"] == "array"
    assert parameters["properties"]["message_ids"]["items"] == {"type": "integer"}


def test_read_and_unconfirmed_actions_are_tools_without_the_gated_note() -> None:
    read = tool_definition(make_action(list_orders, kind="read"))["function"]
    assert read["description"] == "List the shop's orders."
    assert read["parameters"]["properties"] == {}
    auto = tool_definition(make_action(delete_spam, kind="write", confirm=False))["function"]
    assert auto["description"] == ""
    gated = tool_definition(make_action(delete_spam, kind="write"))["function"]
    assert gated["description"] == GATED_NOTE


def test_messages_start_with_the_system_prompt_and_skip_empty_assistant_steps() -> None:
    conversation = [
        user_message("hi"),
        assistant_message("", []),
        user_message("cancel 1"),
        assistant_message("", [ToolCall("cancel_order", {"order_id": 1}, "c1")]),
        tool_message("c1", {"status": "declined", "reason": "the user declined"}),
        assistant_message("Okay.", []),
    ]
    messages = chat_messages(conversation, "Be brief.")
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1:] == [conversation[0], *conversation[2:]]
    assert chat_messages(conversation, "") == [conversation[0], *conversation[2:]]


def assemble(*fragments: tuple[int | None, str | None, str | None, str | None]) -> list[ToolCall]:
    assembler = ToolCallAssembler()
    for fragment in fragments:
        assembler.add(*fragment)
    return assembler.calls()


def test_fragments_are_joined_by_index_in_the_order_calls_began() -> None:
    calls = assemble(
        (0, "call_a", "cancel_order", ""),
        (1, "call_b", "cancel_order", '{"order'),
        (0, None, None, '{"order_id"'),
        (1, None, None, '_id": 1002}'),
        (0, None, None, ": 1001}"),
    )
    assert calls == [
        ToolCall("cancel_order", {"order_id": 1001}, "call_a"),
        ToolCall("cancel_order", {"order_id": 1002}, "call_b"),
    ]


def test_a_new_id_at_a_taken_index_starts_another_call() -> None:
    calls = assemble(
        (0, "call_a", "get_order", '{"order_id": 1}'),
        (0, "call_a", None, ""),
        (0, "call_b", "get_order", '{"order_id": 2}'),
    )
    assert [(c.id, c.args) for c in calls] == [
        ("call_a", {"order_id": 1}),
        ("call_b", {"order_id": 2}),
    ]


def test_fragments_without_an_index_continue_the_latest_call() -> None:
    calls = assemble((None, "x1", "list_orders", "{"), (None, None, None, "}"))
    assert calls == [ToolCall("list_orders", {}, "x1")]


def test_empty_arguments_are_no_arguments_and_a_missing_id_stays_empty() -> None:
    assert assemble((0, None, "list_orders", None)) == [ToolCall("list_orders", {}, "")]


def test_arguments_that_are_not_one_json_object_make_an_error_call() -> None:
    broken, listed = assemble(
        (0, "c1", "cancel_order", '{"order_id": 10'),
        (1, "c2", "cancel_order", "[1001]"),
    )
    assert (broken.name, broken.args, broken.id) == ("cancel_order", {}, "c1")
    assert broken.error.startswith("cancel_order: the arguments are not valid JSON (")
    assert listed.error == "cancel_order: the arguments must be one JSON object"
    assert assemble((0, "c3", "list_orders", "{}"))[0].error == ""
