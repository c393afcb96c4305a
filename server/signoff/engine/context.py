"""What an action is told about the call it is running."""

from __future__ import annotations

from dataclasses import dataclass

from signoff.engine.http import ActionHttp


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
    # HTTP requests to other systems; the last response is summarised in the audit row.
    http: ActionHttp
    card_id: str | None = None
