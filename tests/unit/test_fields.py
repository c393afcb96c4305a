"""How a call reads to people: labels, formats, results in words; the call itself unchanged."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field

from signoff.core.actions import ActionError, make_action
from signoff.core.canonical import args_hash
from signoff.core.cards import Status
from signoff.core.closing import SUPERSEDED, told_to_bot
from signoff.core.fields import generic_fields, readable
from signoff.core.frames import card_update_frame
from tests.unit.test_frames import make_card


async def refund(
    ctx: Any,
    order_id: Annotated[int, Field(title="Order")],
    amount: float,
    express: bool = False,
    items: list[str] | None = None,
    api_token: str = "",
) -> dict[str, Any]:
    return {}


def test_labels_come_from_the_action_then_the_field_title_then_the_name() -> None:
    action = make_action(refund, kind="write", labels={"amount": "Refund amount"})
    args = {"order_id": 1002, "amount": 250.0, "express": True, "items": ["mug", "tea"]}
    assert action.display.fields(args) == [
        {"name": "order_id", "label": "Order", "value": "1002"},
        {"name": "amount", "label": "Refund amount", "value": "250"},
        {"name": "express", "label": "Express", "value": "yes"},
        {"name": "items", "label": "Items", "value": "mug, tea"},
    ]


def test_formats_are_templates_over_the_args_and_secrets_stay_masked() -> None:
    action = make_action(
        refund,
        kind="write",
        formats={"order_id": "#{{ order_id }}", "amount": "{{ amount|money('€') }}"},
    )
    args = {"order_id": 7, "amount": 9.5, "api_token": "sk-live-123"}
    shown = {f["name"]: f["value"] for f in action.display.fields(args)}
    assert shown == {"order_id": "#7", "amount": "€9.50", "api_token": "[redacted]"}
    # Only the drawing: the call and its hash are the args as given.
    assert args_hash([{"action": "refund", "args": args}]) == args_hash(
        [{"action": "refund", "args": dict(args)}]
    )


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "—"),
        (False, "no"),
        (3.0, "3"),
        (3.25, "3.25"),
        ([], "none"),
        ({"first_name": "Ada", "vip": True}, "First name: Ada; Vip: yes"),
        ("a\u202eb\nc", "a⟨U+202E⟩b↵c"),
    ],
)
def test_values_read_as_words(value: Any, words: str) -> None:
    assert readable(value) == words


def test_results_read_as_the_actions_sentence_or_a_short_summary() -> None:
    told = make_action(
        refund, kind="write", result_message="Refunded {{ amount|money }} on #{{ order_id }}"
    )
    assert told.display.result({"order_id": 5, "amount": 12.0}, {"ok": 1}) == (
        "Refunded $12.00 on #5"
    )
    plain = make_action(refund, kind="write")
    assert plain.display.result({}, {"order_id": 5, "status": "cancelled"}) == (
        "Order id: 5; Status: cancelled"
    )
    assert plain.display.result({}, None) == ""
    assert len(plain.display.result({}, {"text": "x" * 1000})) == 120
    # A sentence that cannot be made of this result: the call ran, the summary says so.
    broken = make_action(refund, kind="write", result_message="{{ result.missing.deeper }}")
    assert broken.display.result({}, {"done": True}) == "Done: yes"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"labels": {"orderid": "Order"}}, "labels names unknown parameters ['orderid']"),
        ({"formats": {"amount": "{{ amont }}"}}, "unknown parameters: ['amont']"),
        ({"result_message": "{{ nope }}"}, "unknown parameters: ['nope']"),
        ({"confirm_label": ""}, "confirm_label must be text of 1-40 characters"),
        ({"cancel_label": "x" * 41}, "cancel_label must be text of 1-40 characters"),
    ],
)
def test_display_options_are_checked_at_registration(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ActionError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        make_action(refund, kind="write", **options)


def test_a_call_of_an_unknown_action_still_reads_and_keeps_secrets() -> None:
    assert generic_fields({"card_number": "4111", "note_text": "hi"}) == [
        {"name": "card_number", "label": "Card number", "value": "[redacted]"},
        {"name": "note_text", "label": "Note text", "value": "hi"},
    ]


def test_a_card_withdrawn_by_a_new_message_says_so_to_everyone() -> None:
    card = make_card(status=Status.CANCELLED, reason=SUPERSEDED)
    assert card_update_frame(card)["superseded"] is True
    assert told_to_bot(card, 0)["reason"] == SUPERSEDED
    card.reason = None
    assert "superseded" not in card_update_frame(card)
    assert told_to_bot(card, 0)["reason"] == "the user declined"
