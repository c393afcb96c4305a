"""The sweeper: late cards expire, abandoned claims end interrupted, idle sessions end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from signoff.core.cards import CLAIMED, OPEN, Card, Status
from signoff.engine.cards import Cards
from signoff.engine.turns import TURN_LOCK_TTL
from signoff.store import ClaimOutcome, Store


class Sweeper:
    def __init__(
        self,
        *,
        store: Store,
        cards: Cards,
        clock: Callable[[], float],
        spawn: Callable[[Any], None],
    ) -> None:
        self.store = store
        self.cards = cards
        self.clock = clock
        self.spawn = spawn
        self._settling: set[str] = set()

    async def sweep(self, session_grace: float = 2.0) -> None:
        """Expire late cards, mark abandoned claims interrupted, end idle sessions.

        A session's live state is dropped ``session_grace`` seconds after it
        expires, so open widgets first receive its cards' last updates.
        """
        now = self.clock()
        for card in await self.store.due_cards(now):
            # Settled in the background: one busy session's turn lock must not hold up
            # every other session's expiry.
            if card.card_id not in self._settling:
                self._settling.add(card.card_id)
                self.spawn(self._settle(card))
        for session_id in await self.store.expired_sessions(now - session_grace):
            await self.store.end_session(session_id, "expired")

    async def _settle(self, card: Card) -> None:
        """Expire a late open card, or mark an abandoned claimed one interrupted."""
        status = Status.EXPIRED if card.status in OPEN else Status.INTERRUPTED
        try:
            async with self.store.turn(card.session_id, TURN_LOCK_TTL):
                expected = OPEN if card.status in OPEN else CLAIMED
                moved = await self.store.transition(card.card_id, expected, status, self.clock())
                if moved.outcome is ClaimOutcome.OK and moved.card is not None:
                    await self.cards.after_close(moved.card)
        finally:
            self._settling.discard(card.card_id)
