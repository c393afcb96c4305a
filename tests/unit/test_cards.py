"""Cards: status transitions, serialisation, and the role deciding a team level."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from signoff.core.canonical import Call, args_hash
from signoff.core.cards import (
    CLAIMED,
    FINAL,
    OPEN,
    TRANSITIONS,
    Card,
    Status,
    can_move,
    card_tag,
    new_card_id,
    session_tag,
)
from signoff.core.frames import IDENTIFIER_PATTERN


def make_card(**overrides: Any) -> Card:
    calls: list[Call] = [{"action": "refund", "args": {"order_id": 1002, "amount": 250.0}}]
    values: dict[str, Any] = {
        "card_id": "card-1",
        "session_id": "s-1",
        "conversation_id": "conv-1",
        "user_id": "u-1",
        "site": "demo",
        "kind": "write",
        "approver": "team",
        "levels": ["support-lead", "finance"],
        "title": "Refund",
        "text": "Refund $250.00 on order 1002?",
        "calls": calls,
        "effects": ["Refund $250.00 on order 1002?"],
        "titles": ["Refund"],
        "tool_call_ids": ["call-1"],
        "args_hash": args_hash(calls),
        "created_at": 1000.0,
        "timeout_at": 1600.0,
    }
    values.update(overrides)
    return Card(**values)


ALLOWED = [
    (Status.PENDING, Status.APPROVED),
    (Status.PENDING, Status.CANCELLED),
    (Status.PENDING, Status.EXPIRED),
    (Status.WAITING, Status.WAITING),
    (Status.WAITING, Status.APPROVED),
    (Status.WAITING, Status.REJECTED),
    (Status.WAITING, Status.CANCELLED),
    (Status.WAITING, Status.EXPIRED),
    (Status.APPROVED, Status.RUNNING),
    (Status.APPROVED, Status.INTERRUPTED),
    (Status.RUNNING, Status.RUNNING),
    (Status.RUNNING, Status.DONE),
    (Status.RUNNING, Status.FAILED),
    (Status.RUNNING, Status.INTERRUPTED),
]


@pytest.mark.parametrize(("current", "new"), ALLOWED)
def test_allowed_transitions(current: Status, new: Status) -> None:
    assert can_move(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [(current, new) for current in Status for new in Status if (current, new) not in ALLOWED],
)
def test_every_other_transition_is_forbidden(current: Status, new: Status) -> None:
    assert not can_move(current, new)


def test_some_forbidden_transitions_by_name() -> None:
    assert not can_move(Status.PENDING, Status.RUNNING)  # must be claimed first
    assert not can_move(Status.PENDING, Status.REJECTED)  # visitors cancel, teams reject
    assert not can_move(Status.PENDING, Status.PENDING)
    assert not can_move(Status.APPROVED, Status.CANCELLED)  # too late to say no
    assert not can_move(Status.RUNNING, Status.EXPIRED)
    assert not can_move(Status.INTERRUPTED, Status.RUNNING)  # never re-run by itself
    assert not can_move(Status.DONE, Status.RUNNING)
    assert not can_move(Status.CANCELLED, Status.APPROVED)


def test_final_states_are_terminal_and_sets_partition_statuses() -> None:
    assert set(Status) == OPEN | CLAIMED | FINAL
    assert not (OPEN & CLAIMED or OPEN & FINAL or CLAIMED & FINAL)
    for status in FINAL:
        assert status not in TRANSITIONS
        assert not any(can_move(status, new) for new in Status)


def test_role_follows_team_levels() -> None:
    card = make_card(status=Status.WAITING)
    assert card.role == "support-lead"
    card.level = 2
    assert card.role == "finance"
    card.level = 3  # past the last level: still the last role, never an IndexError
    assert card.role == "finance"


def test_role_is_none_for_user_cards() -> None:
    assert make_card(approver="user", levels=[]).role is None
    assert make_card(approver="user", levels=["ignored"]).role is None


def test_to_dict_from_dict_round_trip() -> None:
    card = make_card(
        status=Status.WAITING,
        level=2,
        results=[{"action": "refund", "status": "done", "result": {"ok": True}}],
        decided_by="lead@example",
        reason="looks fine",
        lease_until=1200.5,
        updated_at=1100.0,
    )
    data = card.to_dict()
    assert data["status"] == "waiting"
    assert type(data["status"]) is str
    restored = Card.from_dict(json.loads(json.dumps(data)))
    assert restored == card
    assert restored.status is Status.WAITING
    assert restored.args_hash == args_hash(restored.calls)


def test_copy_shares_nothing_with_the_card() -> None:
    card = make_card()
    copy = card.copy()
    assert copy == card
    copy.calls[0]["args"]["amount"] = 1.0
    copy.levels.append("ceo")
    assert card.calls[0]["args"]["amount"] == 250.0
    assert card.levels == ["support-lead", "finance"]
    card.results = [{"status": "ok", "result": {"items": [1, 2]}}]
    card.approvals = [{"level": 1, "by": "ann"}]
    again = card.copy()
    again.results[0]["result"]["items"].append(3)
    again.approvals[0]["by"] = "bob"
    assert card.results[0]["result"]["items"] == [1, 2]
    assert card.approvals[0]["by"] == "ann"
    assert again.status is card.status


def test_from_dict_rejects_unknown_status() -> None:
    data = make_card().to_dict()
    data["status"] = "maybe"
    with pytest.raises(ValueError):
        Card.from_dict(data)


def test_a_card_id_carries_its_sessions_tag_and_nothing_else_of_it() -> None:
    one, other = new_card_id("s_abc"), new_card_id("s_abc")
    assert one != other
    assert card_tag(one) == card_tag(other) == session_tag("s_abc")
    assert card_tag(new_card_id("s_abd")) != session_tag("s_abc")
    assert "s_abc" not in one
    # Card ids travel in frames and REST paths.
    assert re.fullmatch(IDENTIFIER_PATTERN, one) and len(one) < 40


@pytest.mark.parametrize("card_id", ["card1", "card_", "card_0123abcd", "card_XYZ0abcdrest"])
def test_an_id_not_made_for_a_session_carries_no_tag(card_id: str) -> None:
    assert card_tag(card_id) is None
