"""The turn runner.

A turn starts with a visitor's message and runs bot steps until the bot stops
talking or asks for a gated call. Then the turn pauses on a card, with its
whole state in the saved conversation, and resumes when the card is decided,
on whichever instance receives the decision.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import httpx

from signoff import metrics
from signoff.audit import AuditLog, AuditStatus
from signoff.core.actions import Action, Registry
from signoff.core.canonical import args_hash
from signoff.core.cards import CLAIMED, OPEN, Card, Status
from signoff.core.conversation import (
    Conversation,
    Text,
    ToolCall,
    assistant_message,
    declined_in_turn,
    pending_tool_calls,
    tool_message,
    user_message,
)
from signoff.core.deciders import AUTO, NO_CLIENT, Client, Decider
from signoff.core.frames import (
    ErrorCode,
    ProtocolError,
    card_frame,
    card_update_frame,
    displayed,
    snapshot_frame,
)
from signoff.core.ratelimit import KeyedLimiter
from signoff.core.resources import card_resource
from signoff.core.teammates import NotAllowed, Teammate, Verdict, approval, check_decider
from signoff.core.tokens import anonymous_user_id
from signoff.core.turns import MAX_STEPS, CardPlan, PlannedCall, plan_step
from signoff.engine.context import ActionContext
from signoff.engine.executor import Auditor, Outcome, bounded, idempotency_key, run_call
from signoff.engine.http import ActionHttp, shared_client
from signoff.engine.notify import CardEvent, EventType, Notifier
from signoff.logs import withheld
from signoff.store import ClaimOutcome, SessionRecord, Store, StoreUnavailable

log = logging.getLogger("signoff.engine")

BOT_STEP_TIMEOUT = 60.0
# The store renews the turn lock while its holder works, so this is only how long a
# dead instance's lock keeps the session's next turn waiting.
TURN_LOCK_TTL = 10.0
# A claimed card is presumed abandoned (its server died) once its lease is over: the
# run timeouts of its calls plus this margin.
LEASE_MARGIN = 30.0
# Audit rows per card for decision attempts refused at the door: a burst, then this rate.
DOOR_REFUSALS_BURST = 20
DOOR_REFUSALS_PER_SECOND = 1 / 6
SORRY = "Sorry, something went wrong on my side. Please try again."
ALREADY_DECLINED = "these exact calls were already declined; do not propose them again"
WAITING_FOR_TEAMMATE = (
    "Your request is waiting for a teammate. I'll carry on as soon as they have decided."
)
TOO_MANY_STEPS = "I had to stop there: that took more steps than I'm allowed in one go."
GAVE_UP = "Alright, I won't do that. Is there anything else I can help with?"

DECLINE_REASONS = {
    Status.CANCELLED: "the user declined",
    Status.REJECTED: "a teammate rejected it",
    Status.EXPIRED: "the confirmation expired before anyone decided",
    Status.INTERRUPTED: "the server stopped while it ran; the outcome is unknown",
}
AUDIT_STATUS = {
    Status.CANCELLED: AuditStatus.CANCELLED,
    Status.REJECTED: AuditStatus.REJECTED,
    Status.EXPIRED: AuditStatus.EXPIRED,
    Status.INTERRUPTED: AuditStatus.INTERRUPTED,
}


class Bot(Protocol):
    def respond(self, conversation: Conversation) -> AsyncIterator[Text | ToolCall]: ...


def visitor(session: SessionRecord) -> str:
    """How a visitor's decisions are signed in cards, frames and the audit log."""
    return f"user:{session.user_id}"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(12)}"


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
    ) -> None:
        self.registry = registry
        self.bot = bot
        self.store = store
        self.audit = audit
        self.session_ttl = session_ttl
        self.lease_margin = lease_margin
        self.notifiers = list(notifiers)
        self.clock = clock
        self.auditor = Auditor(secret)
        self._tasks: set[asyncio.Task[None]] = set()
        self._settling: set[str] = set()
        self._door_refusals = KeyedLimiter(DOOR_REFUSALS_PER_SECOND, DOOR_REFUSALS_BURST)
        self._http: httpx.AsyncClient | None = None  # ctx.http's, opened at first use

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
        """At shutdown, after ``drain``: let go of the actions' HTTP connections."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # Sessions ---------------------------------------------------------------------------
    async def open_session(self, site: str, user_id: str | None) -> SessionRecord:
        now = self.clock()
        session = SessionRecord(
            session_id=new_id("s"),
            user_id=user_id or anonymous_user_id(),
            site=site,
            conversation_id=new_id("conv"),
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

    # Turns ------------------------------------------------------------------------------
    async def handle_message(
        self, session: SessionRecord, text: str, client_id: str, client: Client = NO_CLIENT
    ) -> None:
        """A visitor's message; ``client`` is the address and browser of their socket."""
        if not await self.store.first_use(session.session_id, client_id):
            return  # a re-sent message: its frames are already in the history
        async with self.store.lock(f"turn:{session.session_id}", TURN_LOCK_TTL):
            conversation = await self.store.load_conversation(session.session_id)
            open_cards = await self.store.open_cards(session.session_id)
            if any(card.status is Status.WAITING for card in open_cards):
                # The turn is paused on a teammate: the visitor's words are shown, and the
                # bot continues once the teammate has decided.
                await self._echo(session, text, client_id)
                await self._say(session, None, WAITING_FOR_TEAMMATE)
                return
            for card in open_cards:
                # Moving on without deciding withdraws the open card.
                await self._close_open_card(
                    card,
                    Status.CANCELLED,
                    Decider.at(visitor(session), client),
                    conversation,
                    reason="superseded by a new message",
                )
            for call_id in pending_tool_calls(conversation):
                conversation.append(tool_message(call_id, {"status": "error", "error": "not run"}))
            conversation.append(user_message(text))
            await self._echo(session, text, client_id)
            await self._run_turn(session, conversation)

    async def _echo(self, session: SessionRecord, text: str, client_id: str) -> None:
        """The visitor's message, to every tab of the session."""
        frame = {
            "type": "message",
            "message_id": new_id("m"),
            "role": "user",
            "text": text,
            "client_id": client_id,
        }
        await self.store.append_frame(session.session_id, frame)

    async def _run_turn(self, session: SessionRecord, conversation: Conversation) -> None:
        """Bot steps until the bot is done or a card opens; saves the conversation."""
        try:
            for _ in range(MAX_STEPS):
                calls = await self._bot_step(session, conversation)
                if not calls:
                    return
                declined, repeats = declined_in_turn(conversation)
                plan = plan_step(self.registry, calls, declined, repeats)
                await self._refuse(session, conversation, plan.refused)
                await self._run_now(session, conversation, plan.run_now)
                if plan.card is None:
                    continue
                if not plan.already_declined:
                    await self._open_card(session, conversation, plan.card)
                    return
                for planned in plan.card.calls:
                    content = {
                        "status": "already_declined",
                        "args_hash": plan.card.args_hash,
                        "error": ALREADY_DECLINED,
                    }
                    conversation.append(tool_message(planned.tool_call_id, content))
                if plan.stop_turn:
                    await self._say(session, conversation, GAVE_UP)
                    return
            await self._say(session, conversation, TOO_MANY_STEPS)
        except Exception as exc:
            # Without its message: a bot's or an action's exception may quote the visitor.
            log.error("turn failed in session %s\n%s", session.session_id, withheld(exc))
            await self._say(session, conversation, SORRY)
        finally:
            await self.store.save_conversation(session.session_id, conversation)

    async def _refuse(
        self, session: SessionRecord, conversation: Conversation, refused: list[PlannedCall]
    ) -> None:
        """Calls that can never run (unknown action, bad args): the bot is told why."""
        for call in refused:
            conversation.append(
                tool_message(call.tool_call_id, {"status": "error", "error": call.error})
            )
            await self._audit_uncarded(session, call, AuditStatus.REFUSED, error=call.error)

    async def _run_now(
        self, session: SessionRecord, conversation: Conversation, calls: list[PlannedCall]
    ) -> None:
        """Read calls and calls that need no card, in order."""
        for call in calls:
            assert call.action is not None
            # The call's place in the conversation: unique even if a bot reuses ids.
            scope = f"{session.conversation_id}:{len(conversation)}"
            ctx = self._context(session, call.action, scope, 0, AUTO.signature)
            outcome = await run_call(call.action, call.args, ctx)
            conversation.append(tool_message(call.tool_call_id, outcome.tool_content()))
            await self._audit_uncarded(session, call, _audit_status(outcome), outcome=outcome)

    async def _audit_uncarded(
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

    async def _bot_step(
        self, session: SessionRecord, conversation: Conversation
    ) -> list[ToolCall] | None:
        """One call of the bot, its text streamed; returns its tool calls, None on failure."""
        message_id: str | None = None
        parts: list[str] = []
        calls: list[ToolCall] = []
        try:
            async with asyncio.timeout(BOT_STEP_TIMEOUT):
                async for item in self.bot.respond(list(conversation)):
                    if isinstance(item, Text) and item.text:
                        if message_id is None:
                            message_id = await self._start_message(session.session_id)
                        parts.append(item.text)
                        await self.store.append_frame(
                            session.session_id,
                            {"type": "message.delta", "message_id": message_id, "text": item.text},
                        )
                    elif isinstance(item, ToolCall):
                        calls.append(
                            replace(item, args=dict(item.args), id=item.id or new_id("call"))
                        )
        except Exception as exc:
            log.error("bot step failed in session %s\n%s", session.session_id, withheld(exc))
            if message_id is not None:
                await self._end_message(session.session_id, message_id, "".join(parts))
            await self._say(session, conversation, SORRY)
            return None
        text = "".join(parts)
        if message_id is not None:
            await self._end_message(session.session_id, message_id, text)
        conversation.append(assistant_message(text, calls))
        return calls

    async def _start_message(self, session_id: str) -> str:
        message_id = new_id("m")
        await self.store.append_frame(
            session_id, {"type": "message.start", "message_id": message_id, "role": "bot"}
        )
        return message_id

    async def _end_message(self, session_id: str, message_id: str, text: str) -> None:
        await self.store.append_frame(
            session_id, {"type": "message.end", "message_id": message_id, "text": text}
        )

    async def _say(
        self, session: SessionRecord, conversation: Conversation | None, text: str
    ) -> None:
        """A whole bot message from the engine itself; kept in the conversation if given."""
        message_id = await self._start_message(session.session_id)
        await self._end_message(session.session_id, message_id, text)
        if conversation is not None:
            conversation.append(assistant_message(text, []))

    def _context(
        self,
        scope: SessionRecord | Card,
        action: Action,
        key_scope: str,
        index: int,
        decided_by: str,
        card_id: str | None = None,
    ) -> ActionContext:
        if self._http is None:
            self._http = shared_client()
        return ActionContext(
            site=scope.site,
            session_id=scope.session_id,
            user_id=scope.user_id,
            conversation_id=scope.conversation_id,
            idempotency_key=idempotency_key(key_scope, index),
            decided_by=decided_by,
            http=ActionHttp(self._http, action.run_timeout),
            card_id=card_id,
        )

    # Cards ------------------------------------------------------------------------------
    async def _open_card(
        self, session: SessionRecord, conversation: Conversation, plan: CardPlan
    ) -> None:
        now = self.clock()
        actions = [c.action for c in plan.calls if c.action is not None]
        card = Card(
            card_id=new_id("card"),
            session_id=session.session_id,
            conversation_id=session.conversation_id,
            user_id=session.user_id,
            site=session.site,
            kind=plan.kind,
            approver=plan.approver,
            levels=plan.levels,
            title=plan.title,
            text=plan.text,
            calls=plan.canonical_calls,
            effects=[c.effect for c in plan.calls],
            titles=[a.title for a in actions],
            tool_call_ids=[c.tool_call_id for c in plan.calls],
            args_hash=plan.args_hash,
            created_at=now,
            timeout_at=now + plan.timeout,
            status=Status.WAITING if plan.approver == "team" else Status.PENDING,
            updated_at=now,
        )
        # On record before the card exists anywhere (a teammate may list it once stored),
        # so its decision's rows come after; an audit log that cannot write opens no card.
        waits = "the visitor" if card.approver == "user" else f"level 1 ({card.role})"
        await self._audit_card(
            card, card.calls, AuditStatus.PENDING_CONFIRMATION, None, f"waits for {waits}"
        )
        # Saved before the card is shown, so a decision that comes at once finds the turn.
        await self.store.save_conversation(session.session_id, conversation)
        await self.store.add_card(card)
        metrics.cards_opened.labels(card.approver).inc()
        await self._emit_card(card, min(card.timeout_at, session.expires_at))
        if card.status is Status.WAITING:
            await self._announce(EventType.CARD_WAITING, card, session.expires_at)

    async def _emit_card(self, card: Card, expires_at: float) -> None:
        await self.store.append_frame(card.session_id, self._card_frame(card, expires_at))

    def _card_frame(self, card: Card, expires_at: float) -> dict[str, Any]:
        return card_frame(card, expires_at, self._masks(card))

    def _masks(self, card: Card) -> list[frozenset[str]]:
        """Each call's sensitive arg names, for showing the card."""
        return [self.sensitive(call["action"]) for call in card.calls]

    async def snapshot(self, session: SessionRecord, kept: list[tuple[int, str]]) -> dict[str, Any]:
        """The session as it is now, for a widget that missed history the store trimmed."""
        conversation = await self.store.load_conversation(session.session_id)
        cards = []
        for card in await self.store.session_cards(session.session_id):
            shown = [self._card_frame(card, min(card.timeout_at, session.expires_at))]
            if card.status not in OPEN:
                shown.append(card_update_frame(card))
            cards.append((card.tool_call_ids, shown))
        return snapshot_frame(conversation, cards, kept)

    def sensitive(self, name: str) -> frozenset[str]:
        """The arg names of an action that people never see (masked wherever it is shown)."""
        action = self.registry.get(name)
        return action.sensitive if action else frozenset()

    # Cards as teammates see them ---------------------------------------------------------
    def _resource(self, card: Card, session_expires_at: float | None) -> dict[str, Any]:
        expires_at = min(card.timeout_at, session_expires_at or card.timeout_at)
        return card_resource(card, expires_at, self._masks(card))

    async def describe(self, *cards: Card) -> list[dict[str, Any]]:
        """The cards as the API, the dashboard and the notifiers show them (one store
        round trip for all their sessions)."""
        sessions = await self.store.get_sessions([c.session_id for c in cards], self.clock())
        expiry = {sid: session.expires_at for sid, session in sessions.items()}
        return [self._resource(card, expiry.get(card.session_id)) for card in cards]

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
        return card if card is not None and _visible(card, teammate) else None

    async def _announce(
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
        news = CardEvent(event, card, self._resource(card, session_expires_at), details)
        for notifier in self.notifiers:
            try:
                notifier.notify(news)
            except Exception as exc:  # a notifier's fault never stops a turn
                log.error("notifier %r failed on %s\n%s", notifier, event, withheld(exc))

    async def decide(
        self,
        session: SessionRecord,
        card_id: str,
        decision: str,
        quoted_hash: str,
        client: Client = NO_CLIENT,
    ) -> Card:
        """A visitor's decision from an authenticated socket of ``session``, whose address
        and browser are ``client``."""
        card = await self.store.get_card(card_id)
        if card is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such card", ref=card_id)
        by = Decider.at(visitor(session), client)
        if card.session_id != session.session_id or card.user_id != session.user_id:
            await self._refused(card, by, "decision from another session")
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "this card belongs to another session", ref=card_id
            )
        if card.approver != "user":
            await self._refused(card, by, "visitor decision on a teammate's card")
            raise ProtocolError(ErrorCode.FORBIDDEN, "this card waits for a teammate", ref=card_id)
        if quoted_hash != card.args_hash:
            await self._refused(card, by, "args_hash does not match the card")
            raise ProtocolError(
                ErrorCode.HASH_MISMATCH, "args_hash does not match the card", ref=card_id
            )
        new = Status.APPROVED if decision == "confirm" else Status.CANCELLED
        async with self.store.lock(f"turn:{card.session_id}", TURN_LOCK_TTL):
            card = await self._claim(card, {Status.PENDING}, new, {"decided_by": by.signature})
            return await self._carry_out(card, by)

    async def team_decide(
        self,
        card_id: str,
        verdict: Verdict,
        teammate: Teammate,
        reason: str | None = None,
        level: int | None = None,
    ) -> Card:
        """A teammate's decision on the current level of a card; the card once it is claimed.

        ``level`` is the level the teammate was shown (a dashboard page, a Slack message):
        if the card has moved on since, the decision is refused as already decided
        rather than applied to a level they never saw.

        Returns as soon as the decision is recorded (the next level waits, or the card
        is approved or rejected). Running the calls and the bot's next step go on in
        the background, so neither a slow action nor a client that hangs up stops them.
        """
        claimed: asyncio.Future[Card] = asyncio.get_running_loop().create_future()
        # Read even when the caller is gone, so an unread refusal is not reported as lost.
        claimed.add_done_callback(lambda done: done.cancelled() or done.exception())
        self.spawn(self._team_decision(card_id, verdict, teammate, reason, level, claimed))
        # Shielded: a caller that goes away must not cancel the decision under way.
        return await asyncio.shield(claimed)

    async def _team_decision(
        self,
        card_id: str,
        verdict: Verdict,
        teammate: Teammate,
        reason: str | None,
        level: int | None,
        claimed: asyncio.Future[Card],
    ) -> None:
        try:
            card = await self.store.get_card(card_id)
            # Checked before the turn lock too, so a late decision is answered at once
            # instead of after the winner's whole run (the claim still decides races).
            card = self._waiting_level(card, card_id, level, teammate)
            async with self.store.lock(f"turn:{card.session_id}", TURN_LOCK_TTL):
                card = await self.store.get_card(card_id)
                card = self._waiting_level(card, card_id, level, teammate)
                card = await self._team_claim(card, verdict, teammate, reason)
                claimed.set_result(card)
                decider = teammate.decider(card.approvals[-1]["level"])
                if card.status is Status.WAITING:
                    await self._level_moved(card, decider)
                else:
                    await self._carry_out(card, decider)
        except Exception as exc:
            if claimed.done():
                raise  # after the claim: the background task's failure is logged
            claimed.set_exception(exc)

    @staticmethod
    def _waiting_level(
        card: Card | None, card_id: str, level: int | None, teammate: Teammate
    ) -> Card:
        """The card, if it waits on the team at ``level``; else the refusal to answer with."""
        if card is None or not _visible(card, teammate):
            # A visitor's card, or another site's, is not said to exist.
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such card waits on the team", card_id)
        if card.status is not Status.WAITING:
            raise ProtocolError(
                ErrorCode.ALREADY_DECIDED, f"this card is already {card.status}", ref=card_id
            )
        if level is not None and card.level != level:
            raise ProtocolError(
                ErrorCode.ALREADY_DECIDED, f"level {level} of this card is already decided", card_id
            )
        return card

    async def _team_claim(
        self, card: Card, verdict: Verdict, teammate: Teammate, reason: str | None
    ) -> Card:
        """Claim the decision on the card's current level; called under the turn lock.

        Returns the card as the claim left it: waiting on the next level, approved or
        rejected, with the decision's record last in its approvals.
        """
        try:
            check_decider(card, teammate)
        except NotAllowed as exc:
            await self._refused(card, teammate.decider(card.level), f"{teammate.channel}: {exc}")
            raise ProtocolError(ErrorCode.FORBIDDEN, str(exc), ref=card.card_id) from None
        record = approval(card, verdict, teammate, self.clock(), reason)
        changes: dict[str, Any] = {"approvals": [*card.approvals, record]}
        if verdict is Verdict.APPROVE and card.level < len(card.levels):
            changes["level"] = card.level + 1
            new = Status.WAITING
        else:
            changes.update(decided_by=teammate.signature, reason=reason or None)
            new = Status.APPROVED if verdict is Verdict.APPROVE else Status.REJECTED
        return await self._claim(card, {Status.WAITING}, new, changes, card.level)

    async def _level_moved(self, card: Card, decider: Decider) -> None:
        """After a level approved: the audit row, the visitor's update, the next level's news."""
        decided = card.approvals[-1]
        await self._audit_card(
            card,
            card.calls,
            AuditStatus.PENDING_CONFIRMATION,
            decider,
            f"level {decided['level']} ({decided['role']}) approved; "
            f"level {card.level} ({card.role}) waits",
        )
        await self.store.append_frame(card.session_id, card_update_frame(card))
        if self.notifiers:
            session = await self.store.get_session(card.session_id, self.clock())
            expires_at = session.expires_at if session else None
            await self._announce(EventType.CARD_DECIDED, card, expires_at, approval=decided)
            await self._announce(EventType.CARD_WAITING, card, expires_at)

    async def _claim(
        self,
        card: Card,
        expected: set[Status],
        new: Status,
        changes: dict[str, Any],
        level: int | None = None,
    ) -> Card:
        """The exactly-once step; called under the turn lock. Raises if another won."""
        now = self.clock()
        if new is Status.APPROVED:
            lease = sum(self._run_timeout(c["action"]) for c in card.calls) + self.lease_margin
            changes = {**changes, "lease_until": now + lease}
        moved = await self.store.transition(
            card.card_id, expected, new, now, changes, check_deadline=True, level=level
        )
        if moved.card is None:  # ClaimOutcome.MISSING
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such card", ref=card.card_id)
        if moved.outcome is ClaimOutcome.CONFLICT:
            status = moved.card.status
            already = f"level {level} of this card is already decided" if status is new else None
            raise ProtocolError(
                ErrorCode.ALREADY_DECIDED,
                already or f"this card is already {status}",
                ref=card.card_id,
            )
        if moved.outcome is ClaimOutcome.EXPIRED:
            await self._after_close(moved.card)
            raise ProtocolError(ErrorCode.EXPIRED, "this card has expired", ref=card.card_id)
        if new is not Status.WAITING:
            await self._announce(EventType.CARD_DECIDED, moved.card, approval=_last(moved.card))
        return moved.card

    async def _carry_out(self, card: Card, decider: Decider) -> Card:
        """After a claim: run the approved calls, or close the declined card; then resume."""
        if card.status is Status.APPROVED:
            return await self._execute(card, decider)
        await self._after_close(card, decider)
        return card

    def _run_timeout(self, name: str) -> float:
        action = self.registry.get(name)
        return action.run_timeout if action else 0.0

    async def _execute(self, card: Card, decider: Decider) -> Card:
        """Run the card's calls in order, exactly as held; stop at the first failure."""
        moved = await self.store.transition(
            card.card_id, {Status.APPROVED}, Status.RUNNING, self.clock()
        )
        if moved.outcome is not ClaimOutcome.OK or moved.card is None:
            raise ProtocolError(
                ErrorCode.ALREADY_DECIDED, "this card is no longer approved", ref=card.card_id
            )
        card = moved.card
        await self.store.append_frame(card.session_id, card_update_frame(card))
        conversation = await self.store.load_conversation(card.session_id)
        results: list[dict[str, Any]] = []
        # The held calls must still be the shown calls, byte for byte.
        stop = None if args_hash(card.calls) == card.args_hash else "not run: calls were altered"
        for index, (call, call_id) in enumerate(zip(card.calls, card.tool_call_ids, strict=True)):
            name = call["action"]
            action = self.registry.get(name)
            if stop is not None:
                outcome = Outcome(False, error=stop)
                results.append({"action": name, "status": "skipped", "error": stop})
            else:
                if action is None:
                    outcome = Outcome(False, error=f"unknown action {name!r}")
                else:
                    ctx = self._context(
                        card, action, card.card_id, index, decider.signature, card.card_id
                    )
                    outcome = await run_call(action, call["args"], ctx)
                results.append(_result_summary(name, outcome, self.sensitive(name)))
                await self._announce(EventType.CALL_EXECUTED, card, index=index, result=results[-1])
                if not outcome.ok:
                    stop = "not run: an earlier call failed"
            conversation.append(tool_message(call_id, outcome.tool_content()))
            # Kept call by call, audit row first, so a crash later in the chain leaves
            # every call that ran on record, and none twice.
            await self.audit.record(
                self.auditor.entry(
                    card,
                    action,
                    name,
                    call["args"],
                    AuditStatus.SKIPPED
                    if results[-1]["status"] == "skipped"
                    else _audit_status(outcome),
                    card_id=card.card_id,
                    decider=decider,
                    outcome=outcome,
                )
            )
            await self.store.transition(
                card.card_id, {Status.RUNNING}, Status.RUNNING, self.clock(), {"results": results}
            )
        final = Status.FAILED if stop is not None else Status.DONE
        moved = await self.store.transition(
            card.card_id,
            {Status.RUNNING},
            final,
            self.clock(),
            {"results": results, "lease_until": None},
        )
        if moved.card is not None:
            card = moved.card
            metrics.cards_closed.labels(card.status).inc()
            await self.store.append_frame(card.session_id, card_update_frame(card))
            await self._announce(EventType.CARD_CLOSED, card)
        await self._resume(card, conversation)
        return card

    async def _close_open_card(
        self, card: Card, status: Status, by: Decider, conversation: Conversation, reason: str
    ) -> None:
        changes = {"decided_by": by.signature, "reason": reason}
        moved = await self.store.transition(card.card_id, OPEN, status, self.clock(), changes)
        if moved.outcome is ClaimOutcome.OK and moved.card is not None:
            await self._closed(moved.card, conversation, by)

    async def _closed(
        self, card: Card, conversation: Conversation, decider: Decider | None = None
    ) -> None:
        """Tell the widgets, the audit log and the bot that a card ended without finishing.

        ``decider`` declined it; without one (expired, interrupted) the rows name who
        the card says decided, if anyone, with no address.
        An interrupted card may have run some calls before its server died; those
        are on record already (``card.results``) and are reported as they ended.
        """
        metrics.cards_closed.labels(card.status).inc()
        await self.store.append_frame(card.session_id, card_update_frame(card))
        await self._announce(EventType.CARD_CLOSED, card)
        reason = DECLINE_REASONS[card.status]
        finished = len(card.results)
        if decider is None and card.decided_by is not None:
            decider = Decider(card.decided_by)
        await self._audit_card(
            card, card.calls[finished:], AUDIT_STATUS[card.status], decider, card.reason or reason
        )
        answered = {m.get("tool_call_id") for m in conversation if m.get("role") == "tool"}
        for index, call_id in enumerate(card.tool_call_ids):
            if call_id in answered:
                continue
            if index < finished:
                content = _tool_content(card.results[index])
            elif card.status is Status.INTERRUPTED:
                content = {"status": "error", "error": reason}
            else:
                content = {"status": "declined", "reason": reason, "args_hash": card.args_hash}
            conversation.append(tool_message(call_id, content))

    async def _after_close(self, card: Card, decider: Decider | None = None) -> None:
        conversation = await self.store.load_conversation(card.session_id)
        await self._closed(card, conversation, decider)
        await self._resume(card, conversation)

    async def _resume(self, card: Card, conversation: Conversation) -> None:
        """Continue the paused turn with the card's results in the conversation."""
        session = await self.store.get_session(card.session_id, self.clock())
        if session is not None:
            await self._run_turn(session, conversation)

    async def _refused(self, card: Card, by: Decider, why: str) -> None:
        await self._audit_card(card, card.calls, AuditStatus.REFUSED, by, why)

    async def refuse_attempt(self, card_id: str, by: Decider, why: str) -> None:
        """Audit a decision attempt refused before it reached the card (a bad signature, a
        missing CSRF token, extra fields), when it names a card that exists.

        Such attempts need no credentials, so each card takes only a few rows of them a
        minute: a flood cannot bury the audit log. The rest are logged here.
        """
        card = await self.store.get_card(card_id)
        if card is not None and self._door_refusals.take(card_id, self.clock()):
            await self._refused(card, by, why)
        else:
            log.warning(
                "refused a decision attempt by %s on card %r: %s", by.signature, card_id, why
            )

    async def _audit_card(
        self,
        card: Card,
        calls: list[Any],
        status: AuditStatus,
        decider: Decider | None,
        error: str,
    ) -> None:
        """One audit row per call of the card that did not run."""
        await self.audit.record(
            *[
                self.auditor.entry(
                    card,
                    self.registry.get(call["action"]),
                    call["action"],
                    call["args"],
                    status,
                    card_id=card.card_id,
                    decider=decider,
                    error=error,
                )
                for call in calls
            ]
        )

    # Sweeping ---------------------------------------------------------------------------
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
            async with self.store.lock(f"turn:{card.session_id}", TURN_LOCK_TTL):
                expected = OPEN if card.status in OPEN else CLAIMED
                moved = await self.store.transition(card.card_id, expected, status, self.clock())
                if moved.outcome is ClaimOutcome.OK and moved.card is not None:
                    await self._after_close(moved.card)
        finally:
            self._settling.discard(card.card_id)


def _visible(card: Card, teammate: Teammate) -> bool:
    return card.approver == "team" and teammate.covers(card.site)


def _last(card: Card) -> dict[str, Any] | None:
    return card.approvals[-1] if card.approvals else None


def _audit_status(outcome: Outcome) -> AuditStatus:
    return AuditStatus.SUCCESS if outcome.ok else AuditStatus.FAILED


def _tool_content(summary: dict[str, Any]) -> dict[str, Any]:
    """What the bot is told of a call known only from the card's recorded results."""
    if summary["status"] == "done":
        return {"status": "ok", "result": summary.get("result")}
    return {"status": "error", "error": summary.get("error")}


def _result_summary(name: str, outcome: Outcome, sensitive: frozenset[str]) -> dict[str, Any]:
    """A call's result as the widgets see it, with sensitive names masked."""
    if outcome.ok:
        return {
            "action": name,
            "status": "done",
            "result": bounded(displayed(outcome.result, sensitive)),
        }
    return {"action": name, "status": "failed", "error": outcome.error}
