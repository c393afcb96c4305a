"""What an action is told about the call it is running."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionContext:
    site: str
    session_id: str
    user_id: str
    conversation_id: str
    # Stable for this one call: a retried delivery to another system can use it
    # to avoid doing the same thing twice.
    idempotency_key: str
    decided_by: str
    card_id: str | None = None
