"""Cards as teammates see them: the document the API, webhooks, Slack and the dashboard use.

Unlike the visitor's frames, it names the teammates who decided and the session the
card belongs to. Sensitive params are masked here too: nobody reads them off a card.
"""

from __future__ import annotations

from typing import Any

from signoff.core.cards import Card
from signoff.core.closing import audit_reason, visitors_reason
from signoff.core.frames import card_frame, iso


def card_resource(
    card: Card,
    expires_at: float,
    sensitive: list[frozenset[str]] | None = None,
    fields: list[list[dict[str, str]]] | None = None,
    buttons: dict[str, str] | None = None,
) -> dict[str, Any]:
    shown = card_frame(card, expires_at, sensitive, fields, buttons)
    del shown["type"]
    return {
        **shown,
        "site": card.site,
        "session_id": card.session_id,
        "conversation_id": card.conversation_id,
        "user_id": card.user_id,
        "level": card.level,
        "levels": card.levels,
        "role": card.role,
        "approvals": card.approvals,
        "approval": card.approvals[-1] if card.approvals else None,
        "decided_by": card.decided_by,
        # A visitor's own words on a decline stay between them and the bot: this document
        # goes to webhooks and Slack too.
        "reason": card.reason if visitors_reason(card) is None else audit_reason(card),
        "results": card.results,
        "created_at": iso(card.created_at),
        "updated_at": iso(card.updated_at),
    }
