"""The conversation: message shapes, the current turn, declines, unanswered tool calls."""

from __future__ import annotations

import json
import random
from typing import Any

from signoff.core.conversation import (
    Conversation,
    Text,
    ToolCall,
    _size,
    assistant_message,
    current_turn,
    declined_in_turn,
    pending_tool_calls,
    ran_calls,
    tool_content,
    tool_message,
    user_message,
    window,
)

H1 = "sha256:" + "1" * 64
H2 = "sha256:" + "2" * 64


def call(call_id: str, name: str = "refund", **args: Any) -> ToolCall:
    return ToolCall(name=name, args=args, id=call_id)


def test_user_message_shape() -> None:
    assert user_message("hi") == {"role": "user", "content": "hi"}


def test_assistant_message_without_calls() -> None:
    assert assistant_message("Hello", []) == {"role": "assistant", "content": "Hello"}
    assert assistant_message("", []) == {"role": "assistant", "content": None}


def test_assistant_message_with_calls_uses_the_chat_api_shape() -> None:
    message = assistant_message("", [call("t1", order_id=1, note="Zoë")])
    assert message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "t1",
                "type": "function",
                "function": {
                    "name": "refund",
                    "arguments": json.dumps({"order_id": 1, "note": "Zoë"}),
                },
            }
        ],
    }
    arguments = message["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"order_id": 1, "note": "Zoë"}


def test_tool_message_and_content_round_trip() -> None:
    message = tool_message("t1", {"status": "ok", "result": [1, 2]})
    assert message["role"] == "tool"
    assert message["tool_call_id"] == "t1"
    assert isinstance(message["content"], str)
    assert tool_content(message) == {"status": "ok", "result": [1, 2]}


def test_tool_content_tolerates_bad_content() -> None:
    assert tool_content({"role": "tool", "content": "not json"}) == {}
    assert tool_content({"role": "tool", "content": "[1, 2]"}) == {}
    assert tool_content({"role": "tool", "content": None}) == {}
    assert tool_content({"role": "tool"}) == {}


def test_text_and_tool_call_defaults() -> None:
    assert Text("hi").text == "hi"
    bare = ToolCall("list_orders")
    assert (bare.args, bare.id) == ({}, "")


def test_current_turn_is_everything_after_the_last_user_message() -> None:
    conversation: Conversation = [
        user_message("one"),
        assistant_message("a", []),
        user_message("two"),
        assistant_message("b", []),
        tool_message("t1", {"status": "ok"}),
    ]
    assert current_turn(conversation) == conversation[3:]
    assert current_turn([user_message("x")]) == []
    assert current_turn([assistant_message("hello", [])]) == [assistant_message("hello", [])]


def declined(call_id: str, args_hash: str, status: str = "declined") -> dict[str, Any]:
    return tool_message(call_id, {"status": status, "reason": "no", "args_hash": args_hash})


def already(call_id: str, args_hash: str) -> dict[str, Any]:
    return tool_message(call_id, {"status": "already_declined", "args_hash": args_hash})


def test_declined_in_turn_collects_declined_rejected_and_expired() -> None:
    conversation: Conversation = [
        user_message("refund"),
        assistant_message("", [call("t1")]),
        declined("t1", H1),
        assistant_message("", [call("t2")]),
        declined("t2", H2, status="rejected"),
        assistant_message("", [call("t3")]),
        declined("t3", "sha256:" + "3" * 64, status="expired"),
    ]
    hashes, repeats = declined_in_turn(conversation)
    assert hashes == {H1, H2, "sha256:" + "3" * 64}
    assert repeats == 0


def test_declined_in_turn_ignores_other_results() -> None:
    conversation: Conversation = [
        user_message("refund"),
        assistant_message("", [call("t1"), call("t2"), call("t3")]),
        tool_message("t1", {"status": "ok", "args_hash": H1}),
        tool_message("t2", {"status": "error", "error": "boom", "args_hash": H2}),
        tool_message("t3", {"status": "declined"}),  # no hash: nothing to match
    ]
    assert declined_in_turn(conversation) == (set(), 0)


def test_declined_in_turn_only_counts_the_current_turn() -> None:
    earlier: Conversation = [
        user_message("refund 20"),
        assistant_message("", [call("t1")]),
        declined("t1", H1),
        assistant_message("", [call("t2")]),
        already("t2", H1),
        assistant_message("OK, I won't.", []),
    ]
    conversation = [*earlier, user_message("refund 20 again please")]
    assert declined_in_turn(conversation) == (set(), 0)
    conversation += [assistant_message("", [call("t3")]), declined("t3", H2)]
    assert declined_in_turn(conversation) == ({H2}, 0)


def test_declined_in_turn_counts_re_proposals() -> None:
    conversation: Conversation = [
        user_message("refund"),
        assistant_message("", [call("t1")]),
        declined("t1", H1),
        assistant_message("", [call("t2")]),
        already("t2", H1),
    ]
    assert declined_in_turn(conversation) == ({H1}, 1)
    conversation += [assistant_message("", [call("t3")]), already("t3", H1)]
    assert declined_in_turn(conversation) == ({H1}, 2)


def test_a_re_proposed_chain_counts_once_per_proposal() -> None:
    conversation: Conversation = [
        user_message("cancel 1001 and 1002"),
        assistant_message("", [call("t1"), call("t2")]),
        declined("t1", H1),
        declined("t2", H1),
        assistant_message("", [call("t3"), call("t4")]),
        already("t3", H1),
        already("t4", H1),
    ]
    assert declined_in_turn(conversation) == ({H1}, 1)


def test_pending_tool_calls_are_the_unanswered_ids_of_the_last_assistant_message() -> None:
    conversation: Conversation = [
        user_message("go"),
        assistant_message("", [call("t1"), call("t2"), call("t3")]),
        tool_message("t2", {"status": "ok"}),
    ]
    assert pending_tool_calls(conversation) == ["t1", "t3"]
    conversation.append(tool_message("t1", {"status": "ok"}))
    conversation.append(tool_message("t3", {"status": "ok"}))
    assert pending_tool_calls(conversation) == []


def test_pending_tool_calls_look_only_at_the_last_step() -> None:
    conversation: Conversation = [
        user_message("go"),
        assistant_message("", [call("old")]),  # never answered, but superseded
        assistant_message("", [call("t1")]),
    ]
    assert pending_tool_calls(conversation) == ["t1"]


def test_no_pending_tool_calls() -> None:
    assert pending_tool_calls([]) == []
    assert pending_tool_calls([user_message("hi")]) == []
    assert pending_tool_calls([user_message("hi"), assistant_message("hello", [])]) == []
    after_user: Conversation = [
        assistant_message("", [call("t1")]),
        user_message("never mind"),
    ]
    assert pending_tool_calls(after_user) == []


# The window a turn keeps ----------------------------------------------------------------


def _turn(n: int, size: int = 10) -> list[dict[str, Any]]:
    call = ToolCall("peek", {"n": n}, f"call-{n}")
    return [
        user_message(f"question {n} " + "x" * size),
        assistant_message("", [call]),
        tool_message(call.id, {"status": "ok", "result": n}),
        assistant_message(f"answer {n}", []),
    ]


def test_window_keeps_whole_turns_and_the_newest() -> None:
    conversation = [m for n in range(50) for m in _turn(n)]
    kept = window(conversation, max_messages=22, max_chars=10**9)
    assert len(kept) == 20  # five whole turns of four messages
    assert kept[0] == user_message("question 45 " + "x" * 10)
    assert kept == conversation[-20:]
    # Every tool result kept has its call kept.
    called = {c["id"] for m in kept for c in m.get("tool_calls") or ()}
    assert {m["tool_call_id"] for m in kept if m["role"] == "tool"} <= called


def test_window_bounds_characters_and_keeps_the_current_turn_whatever_its_size() -> None:
    conversation = [m for n in range(10) for m in _turn(n, size=1000)]
    kept = window(conversation, max_messages=1000, max_chars=3000)
    assert [m["content"][:11] for m in kept if m["role"] == "user"] == [
        "question 8 ",
        "question 9 ",
    ]
    huge = [*conversation, *_turn(99, size=100_000)]
    assert window(huge, max_messages=1000, max_chars=3000) == huge[-4:]


def _suffix_fits(suffix: list[dict[str, Any]], max_messages: int, max_chars: int) -> bool:
    size = sum(_size(m) for m in suffix)
    return len(suffix) <= max_messages and size <= max_chars


def test_window_is_the_longest_run_of_whole_turns_within_both_bounds() -> None:
    """Whichever bound binds (the count, the size or both), the window starts at the
    earliest visitor's message from which the rest fits, or at the last one if none does."""
    rng = random.Random(7)
    for _ in range(400):
        conversation = [
            m
            for n in range(rng.randrange(0, 40))
            for m in _turn(n, size=rng.choice([0, 10, 500]))[: rng.randrange(1, 5)]
        ]
        if rng.random() < 0.2:
            conversation = conversation[rng.randrange(0, 3) :]  # starting mid-turn
        max_messages, max_chars = rng.randrange(1, 60), rng.choice([200, 3_000, 10**9])
        starts = [i for i, m in enumerate(conversation) if m["role"] == "user"]
        fitting = [i for i in starts if _suffix_fits(conversation[i:], max_messages, max_chars)]
        if _suffix_fits(conversation, max_messages, max_chars):
            expected = conversation
        elif fitting:
            expected = conversation[fitting[0] :]
        else:
            expected = conversation[starts[-1] :] if starts else conversation
        assert window(conversation, max_messages, max_chars) == expected


def test_window_leaves_a_short_conversation_alone() -> None:
    conversation = _turn(1)
    assert window(conversation) is conversation


def test_ran_calls_are_the_calls_that_succeeded_by_action() -> None:
    ok, failed = ToolCall("refund", {"amount": 60}, "a"), ToolCall("refund", {"amount": 70}, "b")
    conversation = [
        user_message("refund"),
        assistant_message("", [ok, failed]),
        tool_message("a", {"status": "ok", "result": {}}),
        tool_message("b", {"status": "error", "error": "no"}),
    ]
    assert ran_calls(conversation, {"refund"}) == {"refund": [{"amount": 60}]}
    assert ran_calls(conversation, {"cancel_order"}) == {}
