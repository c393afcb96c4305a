"""The WebSocket protocol's frames: strict parsing of what clients send.

A frame is accepted only if it has exactly the fields of its type with the
right types; anything else is a ``bad_frame`` and changes nothing.
"""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from signoff.core import strict_json
from signoff.core.cards import Card
from signoff.core.closing import SUPERSEDED
from signoff.core.display import displayed
from signoff.core.plain_text import FREE_TEXT
from signoff.core.teammates import TEAMMATE_PREFIX, shown_to_visitor

MAX_FRAME_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4000


class ErrorCode(StrEnum):
    BAD_FRAME = "bad_frame"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"
    ALREADY_DECIDED = "already_decided"
    HASH_MISMATCH = "hash_mismatch"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"  # the store is unreachable for now; try again shortly


class ProtocolError(Exception):
    """A refusal the client is told about with an ``error`` frame."""

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def frame(self) -> dict[str, Any]:
        return error_frame(self.code, self.message, self.ref)


def error_frame(code: ErrorCode, message: str, ref: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": str(code), "message": message}
    if ref is not None:
        frame["ref"] = ref
    return frame


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Token = Annotated[str, Field(min_length=1, max_length=4096)]
# Card ids, client ids: what clients may quote back to the server.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


class Hello(_Frame):
    type: Literal["hello"]
    site: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    user_token: Token | None
    session_token: Token | None
    last_seq: Annotated[int, Field(ge=0)]


class Message(_Frame):
    type: Literal["message"]
    client_id: Identifier
    # The length limit is checked separately so it can answer `too_large`.
    text: Annotated[str, Field(min_length=1), FREE_TEXT]


# A visitor's word on why they declined: a sentence, not a letter.
MAX_DECLINE_REASON = 300


class Decision(_Frame):
    type: Literal["decision"]
    card_id: Identifier
    decision: Literal["confirm", "cancel"]
    args_hash: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    # Why the visitor declined, for the bot: only with "cancel".
    reason: Annotated[str, Field(min_length=1, max_length=MAX_DECLINE_REASON), FREE_TEXT] | None = (
        None
    )

    @model_validator(mode="after")
    def _reason_declines(self) -> Decision:
        if self.reason is not None and self.decision != "cancel":
            raise ValueError("reason: only a cancel decision carries one")
        return self


class PageCall(_Frame):
    """A host page's button asks for an action: ``Signoff.call(action, args)``."""

    type: Literal["call"]
    client_id: Identifier
    action: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    args: dict[str, Any]


class Ping(_Frame):
    type: Literal["ping"]


ClientFrame = Hello | Message | Decision | PageCall | Ping
CLIENT_FRAME_TYPES: tuple[str, ...] = tuple(
    get_args(kind.model_fields["type"].annotation)[0] for kind in get_args(ClientFrame)
)
_adapter: TypeAdapter[ClientFrame] = TypeAdapter(
    Annotated[ClientFrame, Field(discriminator="type")]
)


def parse_client_frame(raw: str | bytes) -> ClientFrame:
    """Parse one text frame; raises ProtocolError(bad_frame | too_large)."""
    if isinstance(raw, bytes):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frames must be JSON text, not binary")
    try:
        frame = _adapter.validate_python(strict_json.loads(raw))
    except strict_json.JSONRefused as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, str(exc)) from None
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, describe_invalid(exc, skip=1)) from None
    if isinstance(frame, Message) and len(frame.text) > MAX_TEXT_CHARS:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"message text is {len(frame.text)} characters; the limit is {MAX_TEXT_CHARS}",
            ref=frame.client_id,
        )
    return frame


def refused_decision_card(raw: str | bytes) -> str | None:
    """The card a frame refused as malformed names, if it is a ``decision`` frame that
    names one: such an attempt is audited on that card, like any refused decision."""
    try:
        data = strict_json.loads(raw)
    except strict_json.JSONRefused:  # not JSON, or not JSON that names one card for sure
        return None
    if not isinstance(data, dict) or data.get("type") != "decision":
        return None
    card_id = data.get("card_id")
    if isinstance(card_id, str) and re.fullmatch(IDENTIFIER_PATTERN, card_id):
        return card_id
    return None


def describe_invalid(exc: ValidationError, skip: int = 0, whole: str = "frame") -> str:
    """What is wrong with a frame or a request body, in a few words (up to three errors).

    ``skip`` leaves out the leading parts of each error's location (a frame's type tag);
    ``whole`` names the thing itself when an error is about all of it.
    """
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"][skip:] or err["loc"]) or whole
        if err["type"] == "extra_forbidden":
            parts.append(f"unexpected field {loc!r}")
        elif err["type"] == "union_tag_invalid":
            parts.append("unknown frame type")
        elif err["type"] == "union_tag_not_found":
            parts.append("missing field 'type'")
        elif err["type"] == "json_invalid":
            parts.append("not valid JSON")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


# Server frames ------------------------------------------------------------------------


def iso(timestamp: float) -> str:
    """Seconds since the epoch as ISO 8601 in UTC, as every frame writes times."""
    # Whole seconds only, so the frames of one second share one text: formatting the
    # datetime took 1.5 µs a frame, the cached text 0.1 µs (timeit, not a load run).
    return _iso_second(math.floor(timestamp))


@functools.lru_cache(maxsize=8)
def _iso_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).isoformat().replace("+00:00", "Z")


def card_frame(
    card: Card,
    expires_at: float,
    sensitive: list[frozenset[str]] | None = None,
    fields: list[list[dict[str, str]]] | None = None,
    buttons: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The card as people see it. ``fields``: each call's args as they read (core.fields);
    ``buttons``: the action's own ``confirm_label`` and ``cancel_label``, if it names them."""
    masks = sensitive or [frozenset()] * len(card.calls)
    actions = []
    for index, (call, title, effect, mask) in enumerate(
        zip(card.calls, card.titles, card.effects, masks, strict=True)
    ):
        action = {
            "action": call["action"],
            "title": title,
            "args": displayed(call["args"], mask),
            "effect": effect,
        }
        if fields is not None:
            action["fields"] = fields[index]
        actions.append(action)
    frame: dict[str, Any] = {
        "type": "card",
        "card_id": card.card_id,
        "status": str(card.status),
        "kind": card.kind,
        "approver": card.approver,
        "title": card.title,
        "text": card.text,
        "actions": actions,
        "args_hash": card.args_hash,
        "expires_at": iso(expires_at),
        **(buttons or {}),
    }
    if card.approver == "team":
        frame.update(level=card.level, role=card.role, levels=card.levels)
    if card.page_call is not None:
        frame["page_call"] = card.page_call  # the client_id of the page's Signoff.call
    return frame


def card_update_frame(card: Card) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "card.update",
        "card_id": card.card_id,
        "status": str(card.status),
    }
    by_teammate = (card.decided_by or "").startswith(TEAMMATE_PREFIX)
    if card.decided_by:
        frame["decided_by"] = shown_to_visitor(card.decided_by)
    if card.approver == "team":
        frame.update(level=card.level, role=card.role)
    if card.reason and not by_teammate:  # a teammate's reason is for the team and the audit
        frame["reason"] = card.reason
    if card.reason == SUPERSEDED:
        frame["superseded"] = True
    if card.results:
        frame["results"] = card.results
    return frame


def compact_replay(frames: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """A replay without the deltas of messages whose full text (message.end) it also holds.

    The seq numbers of the frames kept are unchanged; clients only need them to rise.
    """
    parsed = [(seq, text, json.loads(text)) for seq, text in frames]
    ended = {f["message_id"] for _, _, f in parsed if f.get("type") == "message.end"}
    return [
        (seq, text)
        for seq, text, f in parsed
        if not (f.get("type") == "message.delta" and f.get("message_id") in ended)
    ]


def snapshot_frame(
    conversation: list[dict[str, Any]],
    cards: list[tuple[list[str], list[dict[str, Any]]]],
    kept: list[tuple[int, str]],
) -> dict[str, Any]:
    """The session as it is now, for a client whose history was trimmed away.

    ``cards`` gives each card's tool call ids and the frames that show it as it is
    now; each card goes right after the bot message that proposed it. Messages
    still streaming in ``kept`` come last, with their text so far, so the deltas
    that follow the snapshot extend them.
    """
    owner = {call_id: n for n, (call_ids, _) in enumerate(cards) for call_id in call_ids}
    frames: list[dict[str, Any]] = []
    shown: set[int] = set()

    def show(n: int) -> None:
        if n not in shown:
            shown.add(n)
            frames.extend(cards[n][1])

    for index, message in enumerate(conversation):
        message_id, content = f"history-{index}", message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            frames.append(
                {"type": "message", "message_id": message_id, "role": "user", "text": content}
            )
        elif message.get("role") == "assistant":
            if content:
                frames.append({"type": "message.start", "message_id": message_id, "role": "bot"})
                frames.append({"type": "message.end", "message_id": message_id, "text": content})
            for call in message.get("tool_calls") or ():
                if call.get("id") in owner:
                    show(owner[call["id"]])
    for n in range(len(cards)):  # cards whose proposal is not saved yet
        show(n)
    frames += _streaming(kept)
    return {"type": "snapshot", "frames": frames}


def _streaming(kept: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """The start and text so far of each message in ``kept`` that has not ended."""
    started: dict[str, dict[str, Any]] = {}
    text: dict[str, list[str]] = {}
    for _, raw in kept:
        frame = json.loads(raw)
        message_id = frame.get("message_id")
        if frame.get("type") == "message.start":
            started[message_id] = {k: v for k, v in frame.items() if k != "seq"}
            text[message_id] = []
        elif frame.get("type") == "message.delta" and message_id in text:
            text[message_id].append(frame.get("text", ""))
        elif frame.get("type") == "message.end":
            started.pop(message_id, None)
    frames: list[dict[str, Any]] = []
    for message_id, start in started.items():
        frames.append(start)
        if text[message_id]:
            frames.append(
                {
                    "type": "message.delta",
                    "message_id": message_id,
                    "text": "".join(text[message_id]),
                }
            )
    return frames
