"""What a card that ends without finishing tells the bot and the audit log.

Pure: the engine closes the card; this says what each way of closing means.
"""

from __future__ import annotations

from typing import Any

from signoff.core.cards import Card, Status

DECLINE_REASONS = {
    Status.CANCELLED: "the user declined",
    Status.REJECTED: "a teammate rejected it",
    Status.EXPIRED: "the confirmation expired before anyone decided",
    Status.INTERRUPTED: "the server stopped while it ran; the outcome is unknown",
}


# A card the visitor left open by sending a new message: withdrawn, not declined.
SUPERSEDED = "withdrawn: the visitor sent a new message instead of deciding"
# A request the visitor took back while it waited for a teammate.
WITHDRAWN = "withdrawn by the visitor before a teammate decided"


def closing_reason(card: Card) -> str:
    """Why the card ended without running, as the bot is told."""
    if card.reason in (SUPERSEDED, WITHDRAWN):
        return card.reason
    return DECLINE_REASONS[card.status]


def visitors_reason(card: Card) -> str | None:
    """The visitor's own words on why they declined the card, if they gave any."""
    if card.status is Status.CANCELLED and card.reason not in (None, SUPERSEDED, WITHDRAWN):
        return card.reason
    return None


def audit_reason(card: Card) -> str:
    """Why the card ended, as its audit rows say: a teammate's own words if any. The
    visitor's are free text, which the log never keeps: only that they gave some."""
    if (words := visitors_reason(card)) is not None:
        return f"{closing_reason(card)}, saying why ({len(words)} characters, not kept)"
    return card.reason or closing_reason(card)


def told_to_bot(card: Card, index: int, team_reasons: bool = False) -> dict[str, Any]:
    """The tool result the bot gets for call ``index`` of a card that ended unfinished.

    Calls that ran before an interrupted card's server died are reported as they ended
    (``card.results``); the rest did not run. With ``team_reasons`` (the site allows it),
    a teammate's reason for rejecting reaches the bot too (``why``), so the model can offer
    something else rather than ask again.
    """
    if index < len(card.results):
        return result_content(card.results[index])
    if card.status is Status.INTERRUPTED:
        return {"status": "error", "error": closing_reason(card)}
    told = {"status": "declined", "reason": closing_reason(card), "args_hash": card.args_hash}
    if team_reasons and card.status is Status.REJECTED and card.reason:
        told["why"] = card.reason
    elif (words := visitors_reason(card)) is not None:
        told["why"] = words
    return told


def result_content(summary: dict[str, Any]) -> dict[str, Any]:
    """What the bot is told of a call known only from the card's recorded results."""
    if summary["status"] == "done":
        return {"status": "ok", "result": summary.get("result")}
    return {"status": "error", "error": summary.get("error")}
