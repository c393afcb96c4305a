"""Telling other systems about cards: Slack messages, outgoing webhooks.

The engine calls ``notify`` as things happen and never waits for delivery: a
notifier queues the event and sends it in its own background work, so a slow
or failing receiver never holds up a turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from signoff.core.cards import Card


class EventType(StrEnum):
    CARD_WAITING = "card.waiting"  # a level of a team card waits for a teammate
    CARD_DECIDED = "card.decided"  # someone approved, confirmed, rejected or cancelled
    CALL_EXECUTED = "call.executed"  # one held call ran (``details``: index, result)
    CARD_CLOSED = "card.closed"  # the card reached its final status


@dataclass(frozen=True)
class CardEvent:
    type: EventType
    card: Card
    # The card as teammates see it (core.resources.card_resource), at the event.
    resource: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    async def start(self) -> None: ...

    def notify(self, event: CardEvent) -> None:
        """Queue the event; must not block or raise."""

    async def close(self) -> None:
        """Finish or drop what is queued, within a bounded time."""
