"""Slack messages for cards that wait on teammates, and the button clicks that come back.

Pure: builds Block Kit JSON from a card as teammates see it (core.resources) and
parses interaction payloads strictly. The notifier and the web endpoint do the talking.

Everything a visitor, a bot or a teammate wrote goes in ``plain_text`` objects, which
Slack shows as written: no bold, italics, strike or code, no links, no mentions and (with
``emoji`` off) no emoji codes. mrkdwn has no way to escape ``*``, ``_``, ``~`` or a
backtick, so only signoff's own words and names it checks (roles, card ids) are mrkdwn,
with ``&``, ``<`` and ``>`` escaped as Slack documents. Values are shown as core.display
shows them: hidden characters made visible, right-to-left text isolated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signoff.core import strict_json
from signoff.core.display import shown
from signoff.core.fields import generic_fields
from signoff.core.frames import IDENTIFIER_PATTERN, Identifier, describe_invalid
from signoff.core.teammates import TEAMMATE_PREFIX, Verdict

APPROVE = "signoff.approve"
REJECT = "signoff.reject"
VERDICTS = {APPROVE: Verdict.APPROVE, REJECT: Verdict.REJECT}

# Slack's own limits, with room to spare: a section's text, a header, the blocks of a message.
SECTION_CHARS = 3000
HEADER_CHARS = 150
MAX_CALLS_SHOWN = 20
VALUE_CHARS = 300  # one parameter's shown value

SLACK_ID = r"^[A-Z0-9]{2,32}$"

STATUS_LINES = {
    "approved": ":white_check_mark: *Approved*, about to run",
    "running": ":gear: *Running*",
    "done": ":white_check_mark: *Done*",
    "failed": ":x: *Failed*",
    "rejected": ":no_entry: *Rejected*",
    "expired": ":hourglass: *Expired* before anyone decided; nothing ran",
    "cancelled": ":no_entry_sign: *Cancelled*; nothing ran",
    "interrupted": ":warning: *Interrupted*: the server stopped while the calls ran; "
    "they are not retried",
}


def escape(text: str) -> str:
    """Text for mrkdwn: Slack reads ``<...>`` as links and mentions, ``&`` as an entity."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(value: Any) -> str:
    """A value someone else wrote, for a line of plain text: clipped, then shown."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return shown(_clip(text, VALUE_CHARS))


def _who(signature: str | None) -> str:
    return _value((signature or "").removeprefix(TEAMMATE_PREFIX) or "nobody")


def _when(iso: str) -> str:
    """A time Slack shows in each reader's own time zone, the UTC text as fallback."""
    unix = int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    return f"<!date^{unix}^{{date_short_pretty}} at {{time}}|{escape(iso)}>"


def button_value(card_id: str, level: int) -> str:
    """What a button carries back: the card and the level the teammate was shown."""
    return json.dumps({"card_id": card_id, "level": level}, separators=(",", ":"))


@dataclass(frozen=True)
class SlackMessage:
    text: str  # the notification's text, and what clients without blocks show
    blocks: list[dict[str, Any]]


def card_message(card: dict[str, Any], progress: dict[str, Any] | None = None) -> SlackMessage:
    """The message for a card resource; ``progress`` is a call.executed event's details."""
    status = card["status"]
    levels = card["levels"]
    title = card["title"]
    blocks: list[dict[str, Any]] = [{"type": "header", "text": _plain(_clip(title, HEADER_CHARS))}]
    if card["text"] and card["text"] != title:
        blocks.append(_section(_plain(card["text"])))
    actions = card["actions"]
    blocks.extend(_section(_plain(_call(action))) for action in actions[:MAX_CALLS_SHOWN])
    if len(actions) > MAX_CALLS_SHOWN:
        blocks.append(_context(f"and {len(actions) - MAX_CALLS_SHOWN} more calls"))
    blocks.append(
        _context(
            f"Level {card['level']} of {len(levels)} · {escape(str(card['role']))} · "
            f"expires {_when(card['expires_at'])} · card `{escape(card['card_id'])}`"
        )
    )
    blocks.append({"type": "divider"})
    blocks.append(_section(_mrkdwn(_status_line(card))))
    if details := _details(card, progress):
        blocks.append(_section(_plain(details)))
    if status == "waiting":
        blocks.append(_buttons(card["card_id"], card["level"]))
    return SlackMessage(_summary(card), blocks)


def _summary(card: dict[str, Any]) -> str:
    status = card["status"]
    if status == "waiting":
        return f"Approval needed ({escape(str(card['role']))}): {escape(card['title'])}"
    return f"{escape(card['title'])}: {status}"


def _plain(text: str) -> dict[str, Any]:
    """Text Slack shows as written: nothing in it formats, links, mentions or turns into emoji."""
    return {"type": "plain_text", "text": _clip(text, SECTION_CHARS), "emoji": False}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _clip(text, SECTION_CHARS)}


def _section(text: dict[str, Any]) -> dict[str, Any]:
    return {"type": "section", "text": text}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _call(action: dict[str, Any]) -> str:
    """A held call as plain text: what it is, its effect, one line per parameter."""
    lines = [f"{action['title']} · {action['action']}"]
    if action.get("effect"):
        lines.append(action["effect"])  # rendered with its values already shown
    # An event queued before cards carried their fields has the args alone.
    fields = action.get("fields") or generic_fields(action["args"])
    lines.extend(f"• {field['label']}: {field['value']}" for field in fields)
    return "\n".join(lines)


def _status_line(card: dict[str, Any]) -> str:
    status = card["status"]
    if status == "waiting":
        return (
            f":hourglass_flowing_sand: *Waiting for {escape(str(card['role']))}* "
            f"(level {card['level']} of {len(card['levels'])})"
        )
    return STATUS_LINES.get(status, escape(status))


def _details(card: dict[str, Any], progress: dict[str, Any] | None) -> str:
    """Who decided each level and why, who cancelled, and what each call returned."""
    lines = []
    for record in card["approvals"]:
        verdict = "approved" if record["decision"] == "approve" else "rejected"
        line = (
            f"Level {record['level']} ({record['role']}): {verdict} by "
            f"{_who(record['by'])} via {record['channel']}"
        )
        if record.get("reason"):
            line += f": {_value(record['reason'])}"
        lines.append(line)
    if card["status"] == "cancelled" and card.get("decided_by"):
        lines.append(f"Cancelled by {_who(card['decided_by'])}")
    for result in card["results"]:
        lines.append(_result(result))
    if progress is not None:
        lines.append(
            f"Call {progress['index'] + 1} of {len(card['actions'])} finished: "
            + _result(progress["result"])
        )
    return "\n".join(lines)


def _result(result: dict[str, Any]) -> str:
    line = f"{result['action']}: {result['status']}"
    if result.get("error"):
        line += f": {_value(str(result['error']))}"
    return line


def _buttons(card_id: str, level: int) -> dict[str, Any]:
    value = button_value(card_id, level)
    return {
        "type": "actions",
        "block_id": f"signoff.decide.{level}",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": value,
            },
            {
                "type": "button",
                "action_id": REJECT,
                "text": {"type": "plain_text", "text": "Reject"},
                "style": "danger",
                "value": value,
            },
        ],
    }


# Clicks ---------------------------------------------------------------------------------


class BadClick(ValueError):
    """An interaction signoff did not ask for; it names the card and user when it can."""

    def __init__(self, why: str, card_id: str | None = None, user_id: str | None = None):
        super().__init__(why)
        self.card_id = card_id
        self.user_id = user_id


@dataclass(frozen=True)
class Click:
    """A verified-shape click on one of signoff's buttons."""

    user_id: str
    verdict: Verdict
    card_id: str
    level: int
    channel_id: str | None


class _Ours(BaseModel):
    """What signoff put in a button: exactly these fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    card_id: Identifier
    level: Annotated[int, Field(ge=1, le=1000)]


class _Slacks(BaseModel):
    """Slack's envelope: it adds fields over time, so only what is read is checked."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class _Id(_Slacks):
    id: Annotated[str, Field(pattern=SLACK_ID)]


class _Action(_Slacks):
    type: Literal["button"]
    action_id: Literal["signoff.approve", "signoff.reject"]
    value: Annotated[str, Field(max_length=2000)]


class _BlockActions(_Slacks):
    type: Literal["block_actions"]
    user: _Id
    channel: _Id | None = None
    actions: Annotated[list[_Action], Field(min_length=1, max_length=1)]


def parse_click(body: bytes) -> Click:
    """The click in a form-encoded interaction request; raises BadClick for anything else."""
    data = _payload(body)
    try:
        envelope = _BlockActions.model_validate(data)
        action = envelope.actions[0]
    except ValidationError as exc:
        raise BadClick(describe_invalid(exc, whole="payload"), *_named(data)) from None
    try:
        ours = _Ours.model_validate_json(action.value)
    except ValidationError as exc:
        why = f"{describe_invalid(exc, whole='value')} in the button's value"
        raise BadClick(why, *_named(data)) from None
    return Click(
        user_id=envelope.user.id,
        verdict=VERDICTS[action.action_id],
        card_id=ours.card_id,
        level=ours.level,
        channel_id=envelope.channel.id if envelope.channel else None,
    )


def _payload(body: bytes) -> Any:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=1)
    except (UnicodeDecodeError, ValueError):
        raise BadClick("expected one form field, payload") from None
    if list(form) != ["payload"] or len(form["payload"]) != 1:
        raise BadClick("expected one form field, payload")
    try:
        return strict_json.loads(form["payload"][0])
    except ValueError:
        raise BadClick("payload is not JSON") from None


def _named(data: Any) -> tuple[str | None, str | None]:
    """The card and Slack user a payload names, if any: for the record of a refusal."""
    user = data.get("user") if isinstance(data, dict) else None
    user_id = user.get("id") if isinstance(user, dict) else None
    actions = data.get("actions") if isinstance(data, dict) else None
    card_id = None
    if isinstance(actions, list) and actions and isinstance(actions[0], dict):
        try:
            value = strict_json.loads(actions[0].get("value") or "")
        except (TypeError, ValueError):
            value = None
        card_id = value.get("card_id") if isinstance(value, dict) else None
    return (
        card_id if isinstance(card_id, str) and re.fullmatch(IDENTIFIER_PATTERN, card_id) else None,
        user_id if isinstance(user_id, str) and re.fullmatch(SLACK_ID, user_id) else None,
    )
