"""The engine's façade: what the web layer calls. The work is done by collaborators a
reader finds by name: ``turns`` (a turn's steps), ``cards`` (a card's life), ``records``
(audit rows and notifier events) and ``sweeper`` (what expires)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from signoff.core.actions import Registry
from signoff.core.bot import Bot
from signoff.core.cards import OPEN, Card, Status
from signoff.core.conversation import Conversation, call_ids
from signoff.core.deciders import NO_CLIENT, Client, Decider
from signoff.core.frames import ErrorCode, ProtocolError, card_update_frame, snapshot_frame
from signoff.core.teammates import Teammate, Verdict
from signoff.core.tokens import anonymous_user_id
from signoff.engine.calls import Calls
from signoff.engine.cards import LEASE_MARGIN, Cards, visible_to_team
from signoff.engine.ids import unguessable_id
from signoff.engine.notify import Notifier
from signoff.engine.records import Records
from signoff.engine.sweeper import Sweeper
from signoff.engine.turns import Turns
from signoff.logs import withheld
from signoff.store import SessionRecord, Store

if TYPE_CHECKING:
    from signoff.audit import AuditLog

log = logging.getLogger("signoff.engine")


class Engine:
    def __init__(
        self,
        *,
        registry: Registry,
        bot: Bot,
        store: Store,
        audit: AuditLog,
        secret: str,
        session_ttl: float,
        lease_margin: float = LEASE_MARGIN,
        notifiers: Sequence[Notifier] = (),
        clock: Callable[[], float] = time.time,
        team_reasons: Callable[[str], bool] = lambda site: False,
    ) -> None:
        self.registry = registry
        self.store = store
        self.audit = audit
        self.session_ttl = session_ttl
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = Calls()
        self.records = Records(
            registry=registry,
            store=store,
            audit=audit,
            secret=secret,
            notifiers=notifiers,
            clock=clock,
        )
        self.cards = Cards(
            registry=registry,
            store=store,
            records=self.records,
            calls=self.calls,
            clock=clock,
            lease_margin=lease_margin,
            resume=self._resume,
            spawn=self.spawn,
            team_reasons=team_reasons,
        )
        self.turns = Turns(
            registry=registry,
            bot=bot,
            store=store,
            records=self.records,
            calls=self.calls,
            open_card=self.cards.open,
            withdraw=self.cards.withdraw,
        )
        self.sweeper = Sweeper(store=store, cards=self.cards, clock=clock, spawn=self.spawn)

    async def _resume(self, session: SessionRecord, conversation: Conversation) -> None:
        await self.turns.run(session, conversation)

    # Background work --------------------------------------------------------------------
    def spawn(self, coro: Any) -> None:
        """Run work that must finish even if the socket that asked for it closes."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            log.error("background task failed\n%s", withheld(failure))

    async def drain(self) -> None:
        """Wait for running turns; used at shutdown and by tests."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """At shutdown, after ``drain``."""
        await self.calls.close()

    # Sessions ---------------------------------------------------------------------------
    async def open_session(self, site: str, user_id: str | None) -> SessionRecord:
        now = self.clock()
        session = SessionRecord(
            session_id=unguessable_id("s"),
            user_id=user_id or anonymous_user_id(),
            site=site,
            conversation_id=unguessable_id("conv"),
            created_at=now,
            expires_at=now + self.session_ttl,
        )
        await self.store.create_session(session)
        return session

    async def touch(self, session_id: str) -> SessionRecord:
        session = await self.store.touch_session(session_id, self.session_ttl, self.clock())
        if session is None:
            raise ProtocolError(ErrorCode.EXPIRED, "the session has expired")
        return session

    async def snapshot(self, session: SessionRecord, kept: list[tuple[int, str]]) -> dict[str, Any]:
        """The session as it is now, for a widget that missed history the store trimmed."""
        conversation = await self.store.load_conversation(session.session_id)
        # The cards of the conversation a turn keeps, and any still open: as bounded as it.
        proposed = call_ids(conversation)
        cards = []
        for card in await self.store.session_cards(session.session_id):
            if card.status not in OPEN and proposed.isdisjoint(card.tool_call_ids):
                continue
            shown = [self.records.card_frame(card, min(card.timeout_at, session.expires_at))]
            if card.status not in OPEN:
                shown.append(card_update_frame(card))
            cards.append((card.tool_call_ids, shown))
        return snapshot_frame(conversation, cards, kept)

    def sensitive(self, name: str) -> frozenset[str]:
        """The arg names of an action that people never see (masked wherever it is shown)."""
        return self.records.sensitive(name)

    # The visitor -------------------------------------------------------------------------
    def queue_message(
        self, session: SessionRecord, text: str, client_id: str, client: Client = NO_CLIENT
    ) -> None:
        """A visitor's message from a socket: its turn runs in the background (the socket
        may close meanwhile). Refused with ``rate_limited`` when the session already has
        as many turns queued as it may."""
        self.turns.admit(session.session_id)
        self.spawn(self.turns.handle_message(session, text, client_id, client))

    async def handle_message(
        self, session: SessionRecord, text: str, client_id: str, client: Client = NO_CLIENT
    ) -> None:
        """A visitor's message, its turn run to its end or pause."""
        self.turns.admit(session.session_id)
        await self.turns.handle_message(session, text, client_id, client)

    async def decide(
        self,
        session: SessionRecord,
        card_id: str,
        decision: str,
        quoted_hash: str,
        client: Client = NO_CLIENT,
        reason: str | None = None,
    ) -> Card:
        """A visitor's decision from an authenticated socket of ``session``; ``reason``,
        why they declined, is told to the bot."""
        return await self.cards.decide(session, card_id, decision, quoted_hash, client, reason)

    # Teammates -----------------------------------------------------------------------------
    async def team_decide(
        self,
        card_id: str,
        verdict: Verdict,
        teammate: Teammate,
        reason: str | None = None,
        level: int | None = None,
    ) -> Card:
        """A teammate's decision on the current level of a card (see ``Cards.team_decide``)."""
        return await self.cards.team_decide(card_id, verdict, teammate, reason, level)

    async def describe(self, *cards: Card) -> list[dict[str, Any]]:
        """The cards as the API, the dashboard and the notifiers show them (one store
        round trip for all their sessions)."""
        sessions = await self.store.get_sessions([c.session_id for c in cards], self.clock())
        expiry = {sid: session.expires_at for sid, session in sessions.items()}
        return [self.records.resource(card, expiry.get(card.session_id)) for card in cards]

    async def team_cards(
        self, teammate: Teammate, status: Status | None = None, limit: int = 200
    ) -> list[Card]:
        """The team cards of the sites ``teammate`` covers, newest first, optionally of one
        status; those waiting now come the longest waiting first, however many there are."""
        filtered = status is not None or teammate.sites is not None
        fetch = max(limit, 1000) if filtered else limit
        if status is Status.WAITING:
            cards = await self.store.waiting_cards(fetch)
        else:
            cards = await self.store.team_cards(fetch)
        return [
            card
            for card in cards
            if (status is None or card.status is status) and teammate.covers(card.site)
        ][:limit]

    async def visible_card(self, card_id: str, teammate: Teammate) -> Card | None:
        """The team card, if it is of a site ``teammate`` covers: what the team may see."""
        card = await self.store.get_card(card_id)
        return card if card is not None and visible_to_team(card, teammate) else None

    async def refuse_attempt(self, card_id: str, by: Decider, why: str) -> None:
        """Audit a decision attempt refused at a door (see ``Records.refused_attempt``)."""
        await self.records.refused_attempt(card_id, by, why)

    # Sweeping ---------------------------------------------------------------------------
    async def sweep(self, session_grace: float = 2.0) -> None:
        await self.sweeper.sweep(session_grace)
