"""Frames: strict parsing of client frames, and the card frames the server sends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signoff.core.canonical import Call, args_hash
from signoff.core.cards import Card, Status
from signoff.core.frames import (
    MAX_FRAME_BYTES,
    MAX_TEXT_CHARS,
    Decision,
    ErrorCode,
    Hello,
    Message,
    Ping,
    ProtocolError,
    card_frame,
    card_update_frame,
    error_frame,
    iso,
    parse_client_frame,
    refused_decision_card,
    snapshot_frame,
)
from signoff.core.redact import REDACTED

HASH = "sha256:" + "0123456789abcdef" * 4

HELLO: dict[str, Any] = {
    "type": "hello",
    "site": "demo",
    "user_token": None,
    "session_token": None,
    "last_seq": 0,
}
MESSAGE: dict[str, Any] = {"type": "message", "client_id": "c-1", "text": "cancel order 1001"}
DECISION: dict[str, Any] = {
    "type": "decision",
    "card_id": "card_1",
    "decision": "confirm",
    "args_hash": HASH,
}
PING: dict[str, Any] = {"type": "ping"}
FRAMES = [HELLO, MESSAGE, DECISION, PING]


def parse(frame: Any) -> Any:
    return parse_client_frame(json.dumps(frame))


def refused(raw: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(raw)
    return info.value


def test_hello_is_accepted() -> None:
    frame = parse(HELLO)
    assert frame == Hello(
        type="hello", site="demo", user_token=None, session_token=None, last_seq=0
    )
    resumed = parse({**HELLO, "user_token": "ut.x", "session_token": "st.y", "last_seq": 12})
    assert isinstance(resumed, Hello)
    assert (resumed.user_token, resumed.session_token, resumed.last_seq) == ("ut.x", "st.y", 12)


def test_message_is_accepted() -> None:
    frame = parse(MESSAGE)
    assert isinstance(frame, Message)
    assert (frame.client_id, frame.text) == ("c-1", "cancel order 1001")
    lines = parse({**MESSAGE, "text": "cancel\torder\r\n1001"})
    assert lines.text == "cancel\torder\r\n1001"


@pytest.mark.parametrize("decision", ["confirm", "cancel"])
def test_decision_is_accepted(decision: str) -> None:
    frame = parse({**DECISION, "decision": decision})
    assert isinstance(frame, Decision)
    assert (frame.card_id, frame.decision, frame.args_hash) == ("card_1", decision, HASH)


def test_a_decline_may_say_why_and_nothing_else_may() -> None:
    frame = parse({**DECISION, "decision": "cancel", "reason": "too expensive"})
    assert isinstance(frame, Decision) and frame.reason == "too expensive"
    for bad, says in (
        ({**DECISION, "decision": "confirm", "reason": "sure"}, "only a cancel"),
        ({**DECISION, "decision": "cancel", "reason": ""}, "reason"),
        ({**DECISION, "decision": "cancel", "reason": "x" * 301}, "reason"),
        ({**DECISION, "decision": "cancel", "reason": "no\u0000"}, "reason"),
        ({**DECISION, "decision": "cancel", "reason": 7}, "reason"),
    ):
        error = refused(json.dumps(bad))
        assert error.code is ErrorCode.BAD_FRAME and says in error.message, bad


def test_ping_is_accepted() -> None:
    assert isinstance(parse(PING), Ping)


def test_bytes_of_text_frames_are_refused_as_binary() -> None:
    error = refused(json.dumps(PING).encode())
    assert error.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    ("frame", "missing"),
    [(frame, key) for frame in FRAMES for key in frame],
)
def test_missing_field_is_a_bad_frame(frame: dict[str, Any], missing: str) -> None:
    incomplete = {k: v for k, v in frame.items() if k != missing}
    assert refused(json.dumps(incomplete)).code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("extra", ["args", "user_id", "status", "seq"])
def test_extra_field_is_a_bad_frame(frame: dict[str, Any], extra: str) -> None:
    error = refused(json.dumps({**frame, extra: None}))
    assert error.code is ErrorCode.BAD_FRAME
    assert extra in error.message


def test_decision_cannot_carry_new_args() -> None:
    error = refused(json.dumps({**DECISION, "args": {"amount": 1}}))
    assert error.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "frame",
    [
        {**HELLO, "last_seq": "0"},
        {**HELLO, "last_seq": True},
        {**HELLO, "last_seq": 1.0},
        {**HELLO, "last_seq": -1},
        {**HELLO, "last_seq": None},
        {**HELLO, "site": 1},
        {**HELLO, "site": "Demo"},
        {**HELLO, "site": "demo\n"},
        {**HELLO, "site": ""},
        {**HELLO, "user_token": 5},
        {**HELLO, "user_token": ""},
        {**HELLO, "session_token": {"sid": "x"}},
        {**MESSAGE, "text": 5},
        {**MESSAGE, "text": ""},
        {**MESSAGE, "text": None},
        {**MESSAGE, "text": "cancel\x00 order 1001"},
        {**MESSAGE, "text": "\x1b[2J"},
        {**MESSAGE, "client_id": 1},
        {**MESSAGE, "client_id": ""},
        {**MESSAGE, "client_id": "a b"},
        {**MESSAGE, "client_id": "x" * 129},
        {**DECISION, "decision": "approve"},
        {**DECISION, "decision": "CONFIRM"},
        {**DECISION, "decision": True},
        {**DECISION, "card_id": None},
        {**DECISION, "card_id": "../etc"},
        {**DECISION, "card_id": "c1\n"},
        {**PING, "type": "PING"},
    ],
)
def test_wrong_type_or_value_is_a_bad_frame(frame: dict[str, Any]) -> None:
    assert refused(json.dumps(frame)).code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "value",
    [
        HASH.upper(),
        "SHA256:" + HASH[7:],
        HASH[7:],
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "g" * 64,
        "md5:" + "a" * 32,
        HASH + "\n",
        " " + HASH,
        "",
        1,
        None,
    ],
)
def test_args_hash_pattern_is_enforced(value: Any) -> None:
    assert refused(json.dumps({**DECISION, "args_hash": value})).code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("type_", ["pong", "welcome", "card", "hello ", "", None, 1])
def test_unknown_type_is_a_bad_frame(type_: Any) -> None:
    assert refused(json.dumps({**PING, "type": type_})).code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("raw", ["[]", "null", '"ping"', "1", "true", '[{"type": "ping"}]'])
def test_non_object_json_is_a_bad_frame(raw: str) -> None:
    assert refused(raw).code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "raw", ["", "{", '{"type": "ping"', "{'type': 'ping'}", '{"type": "ping"} x', "ping", "\x00"]
)
def test_invalid_json_is_a_bad_frame(raw: str) -> None:
    error = refused(raw)
    assert error.code is ErrorCode.BAD_FRAME
    assert error.frame()["type"] == "error"


def test_binary_is_a_bad_frame() -> None:
    assert refused(b"\x00\x01\x02").code is ErrorCode.BAD_FRAME


# A key given twice: one reader would act on the first value, another on the last.
REPEATED_KEYS = [
    '{"type": "ping", "type": "ping"}',
    '{"type": "decision", "card_id": "card_1", "decision": "cancel", "decision": "confirm", '
    f'"args_hash": "{HASH}"}}',
    '{"type": "hello", "site": "demo", "site": "shop", "user_token": null, '
    '"session_token": null, "last_seq": 0}',
]


@pytest.mark.parametrize("raw", REPEATED_KEYS)
def test_a_repeated_key_is_a_bad_frame(raw: str) -> None:
    error = refused(raw)
    assert error.code is ErrorCode.BAD_FRAME
    assert "more than once" in error.message


# Deeper than any parser follows, well within the frame limit.
DEEP = "[" * 30_000 + "]" * 30_000


@pytest.mark.parametrize(
    "raw",
    [
        DEEP,
        f'{{"type": "ping", "x": {DEEP}}}',
        f'{{"type": "decision", "card_id": "card_1", "decision": "confirm", '
        f'"args_hash": "{HASH}", "x": {DEEP}}}',
        '{"type": "hello", "site": "demo", "user_token": null, "session_token": null, '
        '"last_seq": 1e400}',
        '{"type": "hello", "site": "demo", "user_token": null, "session_token": null, '
        '"last_seq": NaN}',
    ],
)
def test_deep_nesting_and_numbers_no_reader_agrees_on_are_bad_frames(raw: str) -> None:
    assert len(raw.encode()) < MAX_FRAME_BYTES
    assert refused(raw).code is ErrorCode.BAD_FRAME
    assert refused_decision_card(raw) is None  # the malformed-decision path reads it too


def test_a_malformed_decision_names_its_card_for_the_audit_log() -> None:
    assert refused_decision_card(json.dumps({**DECISION, "args": {"amount": 1}})) == "card_1"
    assert refused_decision_card(json.dumps({**DECISION, "card_id": "c1\n"})) is None
    assert refused_decision_card(json.dumps(PING)) is None
    assert refused_decision_card(REPEATED_KEYS[1]) is None


def test_message_text_at_the_limit_is_accepted() -> None:
    frame = parse({**MESSAGE, "text": "x" * MAX_TEXT_CHARS})
    assert isinstance(frame, Message)
    assert MAX_TEXT_CHARS == 4000


def test_message_text_over_the_limit_is_too_large() -> None:
    error = refused(json.dumps({**MESSAGE, "text": "x" * (MAX_TEXT_CHARS + 1)}))
    assert error.code is ErrorCode.TOO_LARGE
    assert error.ref == "c-1"
    assert error.frame() == {
        "type": "error",
        "code": "too_large",
        "message": error.message,
        "ref": "c-1",
    }


def test_limit_counts_characters_not_bytes() -> None:
    frame = parse({**MESSAGE, "text": "é" * MAX_TEXT_CHARS})
    assert isinstance(frame, Message)


def test_frames_are_immutable() -> None:
    frame = parse(DECISION)
    with pytest.raises(ValueError):
        frame.args_hash = "sha256:" + "f" * 64  # type: ignore[misc]


def test_error_frame_shape() -> None:
    assert error_frame(ErrorCode.FORBIDDEN, "no") == {
        "type": "error",
        "code": "forbidden",
        "message": "no",
    }
    assert error_frame(ErrorCode.HASH_MISMATCH, "no", ref="card-1")["ref"] == "card-1"


def test_iso_is_utc_with_z() -> None:
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1700000000.9) == "2023-11-14T22:13:20Z"


# Card frames -------------------------------------------------------------------------------


def make_card(approver: str = "user", levels: list[str] | None = None, **extra: Any) -> Card:
    calls: list[Call] = [
        {"action": "pay", "args": {"order_id": 1, "card_number": "4111111111111111", "pin": "7"}},
        {"action": "notify", "args": {"password": "hunter2", "to": "ada"}},
    ]
    return Card(
        card_id="card-1",
        session_id="s-1",
        conversation_id="conv-1",
        user_id="u-1",
        site="demo",
        kind="destructive",
        approver=approver,
        levels=levels or [],
        title="Confirm 2 actions",
        text="They run in this order.",
        calls=calls,
        effects=["Pay order 1", "Notify ada"],
        titles=["Pay", "Notify"],
        tool_call_ids=["t1", "t2"],
        args_hash=args_hash(calls),
        created_at=1000.0,
        timeout_at=1600.0,
        **extra,
    )


def test_card_frame_for_a_user_card() -> None:
    card = make_card()
    frame = card_frame(card, 1600.0, [frozenset({"pin"}), frozenset()])
    assert frame == {
        "type": "card",
        "card_id": "card-1",
        "status": "pending",
        "kind": "destructive",
        "approver": "user",
        "title": "Confirm 2 actions",
        "text": "They run in this order.",
        "actions": [
            {
                "action": "pay",
                "title": "Pay",
                "args": {"order_id": 1, "card_number": REDACTED, "pin": REDACTED},
                "effect": "Pay order 1",
            },
            {
                "action": "notify",
                "title": "Notify",
                "args": {"password": REDACTED, "to": "ada"},
                "effect": "Notify ada",
            },
        ],
        "args_hash": card.args_hash,
        "expires_at": "1970-01-01T00:26:40Z",
    }
    assert "level" not in frame and "role" not in frame and "levels" not in frame
    dumped = json.dumps(frame)
    assert "4111111111111111" not in dumped
    assert "hunter2" not in dumped


def test_card_frame_masks_default_names_without_a_sensitive_list() -> None:
    frame = card_frame(make_card(), 1600.0)
    assert frame["actions"][0]["args"] == {
        "order_id": 1,
        "card_number": REDACTED,
        "pin": "7",
    }
    assert frame["actions"][1]["args"]["password"] == REDACTED


def test_card_frame_does_not_change_the_card() -> None:
    card = make_card()
    card_frame(card, 1600.0)
    assert card.calls[0]["args"]["card_number"] == "4111111111111111"
    assert card.args_hash == args_hash(card.calls)


def test_card_frame_for_a_team_card() -> None:
    card = make_card("team", ["support-lead", "finance"], status=Status.WAITING, level=2)
    frame = card_frame(card, 1600.0)
    assert frame["status"] == "waiting"
    assert frame["approver"] == "team"
    assert frame["level"] == 2
    assert frame["role"] == "finance"
    assert frame["levels"] == ["support-lead", "finance"]


def test_card_update_frame() -> None:
    card = make_card(status=Status.DONE, decided_by="u-1", results=[{"status": "done"}])
    assert card_update_frame(card) == {
        "type": "card.update",
        "card_id": "card-1",
        "status": "done",
        "decided_by": "u-1",
        "results": [{"status": "done"}],
    }
    assert card_update_frame(make_card(status=Status.CANCELLED)) == {
        "type": "card.update",
        "card_id": "card-1",
        "status": "cancelled",
    }


def test_card_update_frame_for_a_team_card() -> None:
    card = make_card(
        "team", ["lead", "finance"], status=Status.REJECTED, reason="too much", decided_by="bo"
    )
    frame = card_update_frame(card)
    assert frame["level"] == 1
    assert frame["role"] == "lead"
    assert frame["reason"] == "too much"
    assert frame["decided_by"] == "bo"


def test_card_frame_masks_sensitive_names_at_any_depth() -> None:
    card = make_card()
    card.calls[1]["args"]["auth"] = {
        "login": "ada",
        "password": "hunter2",
        "keys": [{"token": "t"}],
    }
    frame = card_frame(card, 1600.0)
    assert frame["actions"][1]["args"]["auth"] == {
        "login": "ada",
        "password": REDACTED,
        "keys": [{"token": REDACTED}],
    }


def test_card_frame_shows_integers_beyond_javascripts_precision_as_text() -> None:
    card = make_card()
    card.calls[0]["args"]["order_id"] = 1234567890123456789
    frame = card_frame(card, 1600.0)
    assert frame["actions"][0]["args"]["order_id"] == "1234567890123456789"
    assert card.calls[0]["args"]["order_id"] == 1234567890123456789  # held as the int


def test_a_snapshot_places_cards_after_their_proposal_and_ends_with_streaming_text() -> None:
    conversation = [
        {"role": "user", "content": "wipe a b"},
        {
            "role": "assistant",
            "content": "On it.",
            "tool_calls": [{"id": "t1"}, {"id": "t2"}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "{}"},
        {"role": "user", "content": "and c"},
    ]
    chain = [{"type": "card", "card_id": "k1"}]
    unsaved = [{"type": "card", "card_id": "k2"}]
    kept = [
        (7, json.dumps({"type": "message.end", "message_id": "m0", "text": "x", "seq": 7})),
        (8, json.dumps({"type": "message.start", "message_id": "m1", "role": "bot", "seq": 8})),
        (9, json.dumps({"type": "message.delta", "message_id": "m1", "text": "Hel", "seq": 9})),
        (10, json.dumps({"type": "message.delta", "message_id": "m1", "text": "lo", "seq": 10})),
    ]
    frames = snapshot_frame(conversation, [(["t1", "t2"], chain), (["t9"], unsaved)], kept)
    assert frames["type"] == "snapshot"
    assert [(f["type"], f.get("text") or f.get("card_id")) for f in frames["frames"]] == [
        ("message", "wipe a b"),
        ("message.start", None),
        ("message.end", "On it."),
        ("card", "k1"),
        ("message", "and c"),
        ("card", "k2"),
        ("message.start", None),
        ("message.delta", "Hello"),
    ]
    assert frames["frames"][-2] == {"type": "message.start", "message_id": "m1", "role": "bot"}
