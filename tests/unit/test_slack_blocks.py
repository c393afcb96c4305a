"""Slack messages for team cards and the clicks that come back: built and parsed without I/O."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from signoff.core.canonical import args_hash
from signoff.core.cards import Card, Status
from signoff.core.redact import REDACTED
from signoff.core.resources import card_resource
from signoff.core.teammates import Channel, Teammate, Verdict, approval
from signoff.integrations.slack_blocks import (
    APPROVE,
    MAX_CALLS_SHOWN,
    REJECT,
    SECTION_CHARS,
    BadClick,
    Click,
    button_value,
    card_message,
    escape,
    parse_click,
)
from tests.slack_standin import texts

LENA = Teammate("lena", frozenset({"support-lead"}), Channel.DASHBOARD)
FRED = Teammate("fred", frozenset({"finance"}), Channel.SLACK)
EXPIRES = 1_700_000_600.0  # 2023-11-14T22:23:20Z


def team_card(calls: list[dict[str, Any]] | None = None, **changes: Any) -> Card:
    calls = calls or [{"action": "refund", "args": {"order_id": 1002, "amount": 250.0}}]
    card = Card(
        card_id="card-1",
        session_id="s-1",
        conversation_id="conv-1",
        user_id="u-1",
        site="demo",
        kind="write",
        approver="team",
        levels=["support-lead", "finance"],
        title="Refund 250 on order 1002",
        text="The customer asked for a refund.",
        calls=calls,
        effects=[f"Refunds {call['args'].get('amount')}" for call in calls],
        titles=["Refund"] * len(calls),
        tool_call_ids=[f"t{i}" for i in range(len(calls))],
        args_hash=args_hash(calls),
        created_at=1_700_000_000.0,
        timeout_at=EXPIRES,
        status=Status.WAITING,
    )
    for name, value in changes.items():
        setattr(card, name, value)
    return card


def resource(card: Card, masks: list[frozenset[str]] | None = None) -> dict[str, Any]:
    return card_resource(card, EXPIRES, masks)


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_a_waiting_card_shows_its_calls_level_expiry_and_buttons() -> None:
    message = card_message(resource(team_card()))
    assert message.text == "Approval needed (support-lead): Refund 250 on order 1002"
    assert message.blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Refund 250 on order 1002", "emoji": False},
    }
    shown = texts(message.blocks)
    assert "The customer asked for a refund." in shown
    assert "Refund · refund\nRefunds 250.0\n• Order id: 1002\n• Amount: 250" in shown
    assert (
        "Level 1 of 2 · support-lead · expires "
        "<!date^1700000600^{date_short_pretty} at {time}|2023-11-14T22:23:20Z>"
    ) in shown
    assert ":hourglass_flowing_sand: *Waiting for support-lead* (level 1 of 2)" in shown
    approve, reject = buttons(message.blocks)
    assert (approve["action_id"], approve["style"]) == (APPROVE, "primary")
    assert (reject["action_id"], reject["style"]) == (REJECT, "danger")
    assert json.loads(approve["value"]) == {"card_id": "card-1", "level": 1}
    assert approve["value"] == reject["value"] == button_value("card-1", 1)


def test_sensitive_params_stay_masked() -> None:
    calls = [{"action": "pay", "args": {"order_id": 1, "card_number": "4111111111111111"}}]
    shown = texts(card_message(resource(team_card(calls), [frozenset()])).blocks)
    assert "4111111111111111" not in shown
    assert f"• Card number: {REDACTED}" in shown


def text_objects(node: Any) -> list[dict[str, Any]]:
    """Every Block Kit text object in ``node``: what Slack draws, and how."""
    if isinstance(node, list):
        return [found for item in node for found in text_objects(item)]
    if not isinstance(node, dict):
        return []
    own = [node] if node.get("type") in ("plain_text", "mrkdwn") else []
    return own + [found for value in node.values() for found in text_objects(value)]


# Formatting, links, mentions and emoji codes: each changes a message if Slack reads it.
MARKUP = [
    "*bold*",
    "_italic_",
    "~struck~",
    "`code`",
    "```block```",
    "> quote",
    "<https://evil.example|click>",
    "https://evil.example",
    "<!channel>",
    "<!here>",
    "@channel",
    "<@U123>",
    "<#C123>",
    "<!subteam^S123>",
    ":white_check_mark:",
    "&amp;",
]


def test_what_people_and_bots_wrote_is_plain_text_that_cannot_format_link_or_mention() -> None:
    hostile = " ".join(MARKUP)
    calls = [{"action": "note", "args": {"text": hostile, "nested": {"a": hostile}}}]
    card = team_card(calls, text=f"Note: {hostile}")
    card.effects = [f"Adds the note {hostile}"]
    card.approvals = [{**approval(card, Verdict.APPROVE, LENA, 0.0, None), "reason": hostile}]
    card.level = 2
    card.status, card.decided_by = Status.CANCELLED, f"user:{hostile}"
    card.results = [{"action": "note", "status": "failed", "error": hostile}]
    message = card_message(resource(card))
    objects = text_objects(message.blocks)
    plain = [o["text"] for o in objects if o["type"] == "plain_text"]
    mrkdwn = [o["text"] for o in objects if o["type"] == "mrkdwn"]
    # Each place a person or a bot wrote: card text, effect, each value, reason, who, error.
    assert sum(text.count(hostile) for text in plain) == 7
    assert all(o["emoji"] is False for o in objects if o["type"] == "plain_text")
    for markup in MARKUP:
        assert not any(markup in text for text in mrkdwn)
        assert markup not in message.text
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_values_cannot_add_lines_or_run_backwards() -> None:
    iban = "\u202e00 0130 0532 0440 4073 98ED"
    calls = [{"action": "pay", "args": {"iban": iban, "note": "hi\n• amount: 1"}}]
    card = team_card(calls)
    card.approvals = [{**approval(card, Verdict.APPROVE, LENA, 0.0, None), "reason": "ok\nfine"}]
    shown = texts(card_message(resource(card)).blocks)
    assert "• Iban: ⟨U+202E⟩00 0130 0532 0440 4073 98ED\n• Note: hi↵• amount: 1" in shown
    assert "approved by lena via dashboard: ok↵fine" in shown
    assert "\u202e" not in shown
    assert [line for line in shown.splitlines() if line.startswith("•")] == [
        "• Iban: ⟨U+202E⟩00 0130 0532 0440 4073 98ED",
        "• Note: hi↵• amount: 1",
    ]


def test_right_to_left_values_are_isolated_on_their_line() -> None:
    calls = [{"action": "pay", "args": {"name": "שלום", "amount": 20}}]
    shown = texts(card_message(resource(team_card(calls))).blocks)
    assert "• Name: \u2068\u05e9\u05dc\u05d5\u05dd\u2069\n• Amount: 20" in shown


def test_the_next_level_shows_who_approved_the_first() -> None:
    card = team_card()
    card.approvals = [approval(card, Verdict.APPROVE, LENA, 1_700_000_100.0, None)]
    card.level = 2
    message = card_message(resource(card))
    shown = texts(message.blocks)
    assert "Level 1 (support-lead): approved by lena via dashboard" in shown
    assert "*Waiting for finance* (level 2 of 2)" in shown
    assert json.loads(buttons(message.blocks)[0]["value"]) == {"card_id": "card-1", "level": 2}


def test_a_decided_card_has_no_buttons_and_says_how_it_ended() -> None:
    card = team_card()
    card.approvals = [approval(card, Verdict.APPROVE, LENA, 0.0, None)]
    card.level = 2
    card.approvals.append(approval(card, Verdict.REJECT, FRED, 0.0, "over the monthly limit"))
    card.status, card.decided_by = Status.REJECTED, FRED.signature
    message = card_message(resource(card))
    assert buttons(message.blocks) == []
    assert message.text == "Refund 250 on order 1002: rejected"
    shown = texts(message.blocks)
    assert ":no_entry: *Rejected*" in shown
    assert "Level 2 (finance): rejected by fred via slack: over the monthly limit" in shown


@pytest.mark.parametrize(
    ("status", "results", "expected"),
    [
        ("done", [{"action": "refund", "status": "done", "result": {}}], "refund: done"),
        (
            "failed",
            [{"action": "refund", "status": "failed", "error": "card declined <x>"}],
            "refund: failed: card declined <x>",
        ),
        ("expired", [], "*Expired* before anyone decided; nothing ran"),
        ("interrupted", [], "*Interrupted*: the server stopped while the calls ran"),
    ],
)
def test_outcomes(status: str, results: list[dict[str, Any]], expected: str) -> None:
    card = team_card(status=Status(status), results=results)
    message = card_message(resource(card))
    assert expected in texts(message.blocks)
    assert buttons(message.blocks) == []


def test_a_running_chain_shows_each_call_as_it_finishes() -> None:
    calls = [{"action": "refund", "args": {"amount": n}} for n in (1, 2)]
    card = team_card(calls, status=Status.RUNNING)
    progress = {"index": 0, "result": {"action": "refund", "status": "done", "result": {}}}
    shown = texts(card_message(resource(card), progress).blocks)
    assert ":gear: *Running*\nCall 1 of 2 finished: refund: done" in shown


def test_big_cards_stay_within_slacks_limits() -> None:
    calls = [{"action": "tag", "args": {"text": "x" * 5000}} for _ in range(MAX_CALLS_SHOWN + 5)]
    message = card_message(resource(team_card(calls, title="t" * 400)))
    assert len(message.blocks) <= 50
    assert len(message.blocks[0]["text"]["text"]) == 150
    assert all(len(b["text"]["text"]) <= SECTION_CHARS for b in message.blocks if "text" in b)
    assert "and 5 more calls" in texts(message.blocks)
    assert len(json.dumps(message.blocks)) < 64 * 1024


# Clicks ---------------------------------------------------------------------------------


def interaction(
    value: str | None = None, action_id: str = APPROVE, **changes: Any
) -> dict[str, Any]:
    """An interaction payload shaped like Slack's for a click on one of our buttons."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0LEAD", "username": "lena", "team_id": "T1"},
        "api_app_id": "A1",
        "team": {"id": "T1", "domain": "acme"},
        "channel": {"id": "C0APPROVALS", "name": "approvals"},
        "container": {"type": "message", "message_ts": "1.2", "channel_id": "C0APPROVALS"},
        "trigger_id": "1.2.3",
        "response_url": "https://hooks.slack.com/actions/T1/1/x",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "signoff.decide.1",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": value if value is not None else button_value("card-1", 1),
                "action_ts": "1.3",
            }
        ],
    }
    payload.update(changes)
    return payload


def form(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def test_a_click_on_our_button() -> None:
    assert parse_click(form(interaction())) == Click(
        "U0LEAD", Verdict.APPROVE, "card-1", 1, "C0APPROVALS"
    )
    rejected = parse_click(form(interaction(action_id=REJECT)))
    assert rejected.verdict is Verdict.REJECT


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (interaction(type="view_submission"), "type"),
        (interaction(action_id="other.app"), "action_id"),
        (interaction(value='{"card_id":"card-1","level":1,"amount":1}'), "unexpected field"),
        (interaction(value='{"card_id":"card-1"}'), "level"),
        (interaction(value='{"card_id":"card-1","level":"1"}'), "level"),
        (interaction(value='{"card_id":"card 1","level":1}'), "card_id"),
        (interaction(value="card-1"), "value"),
        (interaction(actions=[]), "actions"),
        (interaction(actions=interaction()["actions"] * 2), "actions"),
        (interaction(user={"id": "lena<script>"}), "user.id"),
    ],
)
def test_anything_else_is_refused(payload: dict[str, Any], why: str) -> None:
    with pytest.raises(BadClick, match=why):
        parse_click(form(payload))


def test_a_refused_click_still_names_its_card_and_user_for_the_audit_log() -> None:
    with pytest.raises(BadClick) as bad:
        parse_click(form(interaction(value='{"card_id":"card-1","level":1,"x":2}')))
    assert (bad.value.card_id, bad.value.user_id) == ("card-1", "U0LEAD")
    with pytest.raises(BadClick) as odd:
        parse_click(form(interaction(value='{"card_id":"card-1\\n"}', user={"id": "u<1>"})))
    assert (odd.value.card_id, odd.value.user_id) == (None, None)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"payload=",
        b"payload=%7B",
        b"payload=1&payload=2",
        b"payload=%7B%7D&extra=1",
        b"other=1",
        b"\xff\xfe",
        b"payload=[]",
    ],
)
def test_bodies_that_are_not_one_payload_field_are_refused(body: bytes) -> None:
    with pytest.raises(BadClick):
        parse_click(body)
