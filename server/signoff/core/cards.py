"""Cards: held calls waiting for a decision, and the states they move through."""

from __future__ import annotations

import dataclasses
import json
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
        """A deep copy; through JSON because that is many times faster than deepcopy."""
        return Card.from_dict(json.loads(json.dumps(self.to_dict())))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Card:
        values = dict(data)
        values["status"] = Status(values["status"])
        return cls(**values)
