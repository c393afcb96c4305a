"""Audit rows and notifier events for cards and calls."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from signoff.audit import AuditEntry, AuditStatus
from signoff.core.actions import Registry
from signoff.core.canonical import Call
from signoff.core.cards import Card
from signoff.core.deciders import AUTO, Decider
from signoff.core.fields import generic_fields
from signoff.core.frames import card_frame
from signoff.core.ratelimit import KeyedLimiter
from signoff.core.resources import card_resource
from signoff.core.turns import PlannedCall
from signoff.engine.executor import Auditor, Outcome
from signoff.engine.notify import CardEvent, EventType, Notifier
from signoff.logs import withheld
from signoff.store import SessionRecord, Store, StoreUnavailable

if TYPE_CHECKING:
    from signoff.audit import AuditLog

log = logging.getLogger("signoff.engine")

# Audit rows per card for decision attempts refused at the door: a burst, then this rate.
DOOR_REFUSALS_BURST = 20
DOOR_REFUSALS_PER_SECOND = 1 / 6
# The same over all the cards of one session.
SESSION_REFUSALS_BURST = 40
SESSION_REFUSALS_PER_SECOND = 1 / 3


class Records:
    """What the audit log and the notifiers (Slack, webhooks) are told."""

    def __init__(
        self,
        *,
        registry: Registry,
        store: Store,
        audit: AuditLog,
        secret: str,
        notifiers: Sequence[Notifier],
        clock: Callable[[], float],
    ) -> None:
        self.registry = registry
        self.store = store
        self.audit = audit
        self.auditor = Auditor(secret)
        self.notifiers = list(notifiers)
        self.clock = clock
        # Per card, and per session over all its cards, so one visitor cannot bury the log
        # by spreading attempts over many cards.
        self._door_refusals = KeyedLimiter(DOOR_REFUSALS_PER_SECOND, DOOR_REFUSALS_BURST)
        self._session_refusals = KeyedLimiter(SESSION_REFUSALS_PER_SECOND, SESSION_REFUSALS_BURST)

    # How cards are shown ---------------------------------------------------------------
    def sensitive(self, name: str) -> frozenset[str]:
        """The arg names of an action that people never see (masked wherever it is shown)."""
        action = self.registry.get(name)
        return action.sensitive if action else frozenset()

    def masks(self, card: Card) -> list[frozenset[str]]:
        """Each call's sensitive arg names, for showing the card."""
        return [self.sensitive(call["action"]) for call in card.calls]

    def fields(self, card: Card) -> list[list[dict[str, str]]]:
        """Each call's args as people read them (core.fields)."""
        shown = []
        for call in card.calls:
            action = self.registry.get(call["action"])
            args = call["args"]
            shown.append(action.display.fields(args) if action else generic_fields(args))
        return shown

    def buttons(self, card: Card) -> dict[str, str]:
        """The labels a lone call's action gives the card's buttons (a chain's are the
        widget's own: "Confirm all")."""
        action = self.registry.get(card.calls[0]["action"]) if len(card.calls) == 1 else None
        if action is None:
            return {}
        labels = {"confirm_label": action.confirm_label, "cancel_label": action.cancel_label}
        return {key: label for key, label in labels.items() if label is not None}

    def card_frame(self, card: Card, expires_at: float) -> dict[str, Any]:
        return card_frame(card, expires_at, self.masks(card), self.fields(card), self.buttons(card))

    def resource(self, card: Card, session_expires_at: float | None) -> dict[str, Any]:
        """The card as teammates see it (the API, the dashboard, the notifiers)."""
        expires_at = min(card.timeout_at, session_expires_at or card.timeout_at)
        return card_resource(
            card, expires_at, self.masks(card), self.fields(card), self.buttons(card)
        )

    # Audit rows ------------------------------------------------------------------------
    async def uncarded(
        self,
        session: SessionRecord,
        call: PlannedCall,
        status: AuditStatus,
        *,
        outcome: Outcome | None = None,
        error: str | None = None,
    ) -> None:
        """The audit row of a call that no card held: decided by no one ("auto")."""
        await self.audit.record(
            self.auditor.entry(
                session,
                call.action,
                call.name,
                call.args,
                status,
                decider=AUTO,
                outcome=outcome,
                error=error,
            )
        )

    async def card_rows(
        self,
        card: Card,
        calls: list[Call],
        status: AuditStatus,
        decider: Decider | None,
        error: str,
    ) -> None:
        """One audit row per call of the card that did not run."""
        await self.audit.record(
            *[self._row(card, call, status, decider, error=error) for call in calls]
        )

    async def ran(
        self, card: Card, index: int, status: AuditStatus, decider: Decider, outcome: Outcome
    ) -> None:
        """The audit row of one held call of the card that ran (or was skipped)."""
        await self.audit.record(
            self._row(card, card.calls[index], status, decider, outcome=outcome)
        )

    def _row(
        self,
        card: Card,
        call: Call,
        status: AuditStatus,
        decider: Decider | None,
        *,
        outcome: Outcome | None = None,
        error: str | None = None,
    ) -> AuditEntry:
        return self.auditor.entry(
            card,
            self.registry.get(call["action"]),
            call["action"],
            call["args"],
            status,
            card_id=card.card_id,
            decider=decider,
            outcome=outcome,
            error=error,
        )

    async def refused(self, card: Card, by: Decider, why: str) -> None:
        await self.card_rows(card, card.calls, AuditStatus.REFUSED, by, why)

    async def refused_attempt(self, card_id: str, by: Decider, why: str) -> None:
        """Audit a decision attempt refused before it reached the card (a bad signature, a
        missing CSRF token, extra fields), when it names a card that exists.

        Such attempts need no credentials, so each card, and each session over all its
        cards, takes only a few rows of them a minute: a flood cannot bury the audit log.
        The rest are logged here.
        """
        card = await self.store.get_card(card_id)
        now = self.clock()
        if (
            card is not None
            and self._session_refusals.take(card.session_id, now)
            and self._door_refusals.take(card_id, now)
        ):
            await self.refused(card, by, why)
        else:
            log.warning(
                "refused a decision attempt by %s on card %r: %s", by.signature, card_id, why
            )

    # Notifier events -------------------------------------------------------------------
    async def announce(
        self,
        event: EventType,
        card: Card,
        session_expires_at: float | None = None,
        **details: Any,
    ) -> None:
        if not self.notifiers:
            return
        if session_expires_at is None:
            try:
                session = await self.store.get_session(card.session_id, self.clock())
            except StoreUnavailable:  # the card's own timeout stands in for its deadline
                session = None
            session_expires_at = session.expires_at if session else None
        news = CardEvent(event, card, self.resource(card, session_expires_at), details)
        for notifier in self.notifiers:
            try:
                notifier.notify(news)
            except Exception as exc:  # a notifier's fault never stops a turn
                log.error("notifier %r failed on %s\n%s", notifier, event, withheld(exc))
