"""Cards: held calls waiting for a decision, and the states they move through."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from signoff.core.canonical import Call


class Status(StrEnum):
    PENDING = "pending"  # waiting for the visitor
    WAITING = "waiting"  # waiting for a teammate at `level`
    APPROVED = "approved"  # claimed; about to run
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the server died between claim and finish
    CANCELLED = "cancelled"  # the visitor said no
    REJECTED = "rejected"  # a teammate said no
    EXPIRED = "expired"


OPEN = frozenset({Status.PENDING, Status.WAITING})
CLAIMED = frozenset({Status.APPROVED, Status.RUNNING})
FINAL = frozenset(
    {
        Status.DONE,
        Status.FAILED,
        Status.INTERRUPTED,
        Status.CANCELLED,
        Status.REJECTED,
        Status.EXPIRED,
    }
)

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.APPROVED, Status.CANCELLED, Status.EXPIRED}),
    # WAITING → WAITING moves to the next level of a team chain.
    Status.WAITING: frozenset(
        {Status.WAITING, Status.APPROVED, Status.REJECTED, Status.CANCELLED, Status.EXPIRED}
    ),
    Status.APPROVED: frozenset({Status.RUNNING, Status.INTERRUPTED}),
    # RUNNING → RUNNING records each finished call of a chain as it goes.
    Status.RUNNING: frozenset({Status.RUNNING, Status.DONE, Status.FAILED, Status.INTERRUPTED}),
}


def can_move(current: Status, new: Status) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


# Card ids start with a tag hashed from their session's id: a store sharded by key (a
# Redis Cluster) then keeps a card with its session knowing only the card's id. The tag
# is a hash, so a card id tells nothing about its session that the card does not.
_CARD_ID_PREFIX = "card_"
_TAG_LENGTH = 8
_TAG = re.compile(f"^{_CARD_ID_PREFIX}([0-9a-f]{{{_TAG_LENGTH}}})[A-Za-z0-9_-]+$")


@functools.lru_cache(maxsize=16384)  # every key name of a session has it: a turn makes ~20
def session_tag(session_id: str) -> str:
    """The tag shared by a session and its cards: fixed length, lowercase hex."""
    return hashlib.blake2b(session_id.encode(), digest_size=_TAG_LENGTH // 2).hexdigest()


def card_id_for(session_id: str, unique: str) -> str:
    """The id of the session's card that ``unique`` (URL-safe) tells apart."""
    return f"{_CARD_ID_PREFIX}{session_tag(session_id)}{unique}"


def new_card_id(session_id: str) -> str:
    return card_id_for(session_id, secrets.token_urlsafe(12))


def card_tag(card_id: str) -> str | None:
    """The session tag a card id carries; None for an id not made by ``card_id_for``."""
    match = _TAG.match(card_id)
    return match.group(1) if match else None


@dataclass
class Card:
    """One or more held calls (a chain), decided together and run in order.

    ``calls`` and ``args_hash`` never change after the card opens; everything
    a decision can alter is in the mutable tail of fields.
    """

    card_id: str
    session_id: str
    conversation_id: str
    user_id: str
    site: str
    kind: str
    approver: str  # "user" | "team"
    levels: list[str]
    title: str
    text: str
    calls: list[Call]
    effects: list[str]
    titles: list[str]
    tool_call_ids: list[str]
    args_hash: str
    created_at: float
    timeout_at: float  # the action's own timeout; the session's expiry caps it too
    status: Status = Status.PENDING
    level: int = 1
    decided_by: str | None = None
    reason: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    # One record per teammate decision, level by level: see core.teammates.approval.
    approvals: list[dict[str, Any]] = field(default_factory=list)
    lease_until: float | None = None
    updated_at: float = 0.0
    # The client_id of the host page's Signoff.call that opened the card; None for the
    # bot's. A page's card pauses no turn: deciding it resumes none.
    page_call: str | None = None

    @property
    def role(self) -> str | None:
        """The role that must decide the current level, for team cards."""
        if self.approver != "team" or not self.levels:
            return None
        return self.levels[min(self.level, len(self.levels)) - 1]

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data (shallow: nested lists are the card's own)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["status"] = str(self.status)
        return data

    def copy(self) -> Card:
        """A deep copy: the calls, results and approvals are the copy's own."""
        return Card(**{name: _json_copy(value) for name, value in vars(self).items()})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Card:
        values = dict(data)
        values["status"] = Status(values["status"])
        return cls(**values)


def _json_copy(value: Any) -> Any:
    """A copy of a JSON-like value (a tuple comes back a list, as JSON would give it);
    about four times faster than a round trip through JSON for a card."""
    if isinstance(value, dict):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_copy(item) for item in value]
    return value
