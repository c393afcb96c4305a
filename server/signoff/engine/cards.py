"""A card's life: opened by a turn, claimed by one decision, run or closed, then the turn
resumes; level by level for cards that wait on teammates."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from typing import Any

from signoff import metrics
from signoff.audit import AuditStatus
from signoff.core.actions import USER, Action, Registry
from signoff.core.canonical import Call, args_hash
from signoff.core.cards import OPEN, Card, Status, new_card_id
from signoff.core.closing import SUPERSEDED, WITHDRAWN, audit_reason, told_to_bot
from signoff.core.conversation import Conversation, ToolCall, ran_calls, tool_message
from signoff.core.deciders import NO_CLIENT, Client, Decider
from signoff.core.display import displayed
from signoff.core.frames import ErrorCode, ProtocolError, card_update_frame
from signoff.core.teammates import NotAllowed, Teammate, Verdict, approval, check_decider
from signoff.core.turns import CardPlan, PlannedCall, card_plan, plan_step
from signoff.engine.calls import Calls
from signoff.engine.executor import Outcome, bounded
from signoff.engine.notify import EventType
from signoff.engine.records import Records
from signoff.engine.turns import (
    TURN_LOCK_TTL,
    audit_status,
    context_of,
    save,
    visitor,
)
from signoff.store import ClaimOutcome, SessionRecord, Store

# A claimed card is presumed abandoned (its server died) once its lease is over: the
# run timeouts of its calls plus this margin.
LEASE_MARGIN = 30.0

Resume = Callable[[SessionRecord, Conversation], Awaitable[None]]
Spawn = Callable[[Any], None]


# Cards a session's page may have open at once (Signoff.call).
MAX_OPEN_PAGE_CARDS = 3


class Cards:
    def __init__(
        self,
        *,
        registry: Registry,
        store: Store,
        records: Records,
        calls: Calls,
        clock: Callable[[], float],
        lease_margin: float,
        resume: Resume,
        spawn: Spawn,
        team_reasons: Callable[[str], bool] = lambda site: False,
    ) -> None:
        self.registry = registry
        # Whether a site lets the bot hear why a teammate rejected a card.
        self.team_reasons = team_reasons
        self.store = store
        self.records = records
        self.calls = calls
        self.clock = clock
        self.lease_margin = lease_margin
        self.resume_turn = resume
        self.spawn = spawn

    # Opening ---------------------------------------------------------------------------
    async def open(
        self,
        session: SessionRecord,
        conversation: Conversation,
        plan: CardPlan,
        page_call: str | None = None,
    ) -> None:
        """The turn pauses on a card holding the step's gated calls; or, with
        ``page_call``, the card of a host page's Signoff.call opens (no turn pauses)."""
        now = self.clock()
        actions = [c.action for c in plan.calls if c.action is not None]
        card = Card(
            card_id=new_card_id(session.session_id),
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
            page_call=page_call,
        )
        # On record before the card exists anywhere (a teammate may list it once stored),
        # so its decision's rows come after; an audit log that cannot write opens no card.
        waits = "the visitor" if card.approver == "user" else f"level 1 ({card.role})"
        called = "; called from the page" if page_call is not None else ""
        await self.records.card_rows(
            card, card.calls, AuditStatus.PENDING_CONFIRMATION, None, f"waits for {waits}{called}"
        )
        # Saved before the card is shown, so a decision that comes at once finds the turn.
        await save(self.store, session.session_id, conversation)
        await self.store.add_card(card)
        metrics.cards_opened.labels(card.approver).inc()
        expires_at = min(card.timeout_at, session.expires_at)
        await self.store.append_frame(card.session_id, self.records.card_frame(card, expires_at))
        if card.status is Status.WAITING:
            await self.records.announce(EventType.CARD_WAITING, card, session.expires_at)

    # A host page's button: Signoff.call -----------------------------------------------------
    async def call_from_page(
        self,
        session: SessionRecord,
        client_id: str,
        name: str,
        args: dict[str, Any],
        callable_here: Collection[str],
    ) -> None:
        """Open the card of a call the host page asks for: always a card, even for a call
        the bot could make without one (a page cannot run anything unconfirmed), and only
        for the actions the site lets its pages call. Refusals are audited."""
        planned = PlannedCall(f"page_{client_id}", name, args, self.registry.get(name))
        if name not in callable_here:
            error = f"{name!r} is not an action this site's pages may call"
            await self.records.uncarded(session, planned, AuditStatus.REFUSED, error=error)
            raise ProtocolError(ErrorCode.FORBIDDEN, error, ref=client_id)
        async with self.store.turn(session.session_id, TURN_LOCK_TTL, client_id) as turn:
            if turn is None:
                return  # a re-sent call: its card is already in the history
            waiting = [c for c in turn.open_cards if c.page_call is not None]
            if len(waiting) >= MAX_OPEN_PAGE_CARDS:
                # A page (or a script on it) calling in a loop must not pile up cards.
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED,
                    f"{len(waiting)} calls from the page already wait for a decision",
                    ref=client_id,
                )
            ran = functools.partial(ran_calls, turn.conversation)
            plan = plan_step(
                self.registry,
                [ToolCall(name, args, planned.tool_call_id)],
                set(),
                0,
                ran,
                context_of(session),
            )
            if plan.refused:
                [refused] = plan.refused
                await self.records.uncarded(
                    session, refused, AuditStatus.REFUSED, error=refused.error
                )
                raise ProtocolError(ErrorCode.BAD_FRAME, refused.error or "refused", ref=client_id)
            card = plan.card or card_plan(
                [
                    replace(c, gate=USER, effect=c.action.effect(c.args))
                    for c in plan.run_now
                    if c.action
                ]
            )
            await self.open(session, turn.conversation, card, page_call=client_id)

    # The visitor's decision -------------------------------------------------------------
    async def decide(
        self,
        session: SessionRecord,
        card_id: str,
        decision: str,
        quoted_hash: str,
        client: Client = NO_CLIENT,
        reason: str | None = None,
    ) -> Card:
        """A visitor's decision from an authenticated socket of ``session``, whose address
        and browser are ``client``; ``reason``, why they declined, goes to the bot."""
        card = await self.store.get_card(card_id)
        if card is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such card", ref=card_id)
        by = Decider.at(visitor(session), client)
        if card.session_id != session.session_id or card.user_id != session.user_id:
            await self.records.refused(card, by, "decision from another session")
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "this card belongs to another session", ref=card_id
            )
        expected, changes = {Status.PENDING}, {"decided_by": by.signature}
        if card.approver != "user":
            if decision != "cancel":
                await self.records.refused(card, by, "visitor decision on a teammate's card")
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, "this card waits for a teammate", ref=card_id
                )
            # What the visitor asked for, they may take back while the team has not decided.
            expected, changes = {Status.WAITING}, {**changes, "reason": WITHDRAWN}
        elif decision == "cancel" and reason:
            changes["reason"] = reason
        if quoted_hash != card.args_hash:
            await self.records.refused(card, by, "args_hash does not match the card")
            raise ProtocolError(
                ErrorCode.HASH_MISMATCH, "args_hash does not match the card", ref=card_id
            )
        new = Status.APPROVED if decision == "confirm" else Status.CANCELLED
        async with self.store.turn(card.session_id, TURN_LOCK_TTL):
            card = await self._claim(card, expected, new, changes)
            return await self._carry_out(card, by)

    # Teammates' decisions ----------------------------------------------------------------
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
            card = waiting_level(card, card_id, level, teammate)
            async with self.store.turn(card.session_id, TURN_LOCK_TTL):
                card = await self.store.get_card(card_id)
                card = waiting_level(card, card_id, level, teammate)
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
            await self.records.refused(
                card, teammate.decider(card.level), f"{teammate.channel}: {exc}"
            )
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
        await self.records.card_rows(
            card,
            card.calls,
            AuditStatus.PENDING_CONFIRMATION,
            decider,
            f"level {decided['level']} ({decided['role']}) approved; "
            f"level {card.level} ({card.role}) waits",
        )
        await self.store.append_frame(card.session_id, card_update_frame(card))
        if self.records.notifiers:
            session = await self.store.get_session(card.session_id, self.clock())
            expires_at = session.expires_at if session else None
            await self.records.announce(EventType.CARD_DECIDED, card, expires_at, approval=decided)
            await self.records.announce(EventType.CARD_WAITING, card, expires_at)

    # Claiming and carrying out ----------------------------------------------------------
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
            await self.after_close(moved.card)
            raise ProtocolError(ErrorCode.EXPIRED, "this card has expired", ref=card.card_id)
        if new is not Status.WAITING:
            approvals = moved.card.approvals
            await self.records.announce(
                EventType.CARD_DECIDED, moved.card, approval=approvals[-1] if approvals else None
            )
        return moved.card

    async def _carry_out(self, card: Card, decider: Decider) -> Card:
        """After a claim: run the approved calls, or close the declined card; then resume."""
        if card.status is Status.APPROVED:
            return await self._execute(card, decider)
        await self.after_close(card, decider)
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
                    outcome = await self.calls.run(
                        action,
                        call["args"],
                        card,
                        card.card_id,
                        index,
                        decider.signature,
                        card.card_id,
                    )
                results.append(_result_summary(action, call, outcome))
                await self.records.announce(
                    EventType.CALL_EXECUTED, card, index=index, result=results[-1]
                )
                if not outcome.ok:
                    stop = "not run: an earlier call failed"
            if card.page_call is None:
                conversation.append(tool_message(call_id, outcome.tool_content()))
            # Kept call by call, audit row first, so a crash later in the chain leaves
            # every call that ran on record, and none twice.
            skipped = results[-1]["status"] == "skipped"
            status = AuditStatus.SKIPPED if skipped else audit_status(outcome)
            await self.records.ran(card, index, status, decider, outcome)
            if index < len(card.calls) - 1:  # the last call's result goes with the close
                await self.store.transition(
                    card.card_id,
                    {Status.RUNNING},
                    Status.RUNNING,
                    self.clock(),
                    {"results": results},
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
            await self.records.announce(EventType.CARD_CLOSED, card)
        await self._resume(card, conversation)
        return card

    # Closing without running --------------------------------------------------------------
    async def withdraw(self, card: Card, by: Decider, conversation: Conversation) -> None:
        """The visitor moved on without deciding: the open card is cancelled."""
        changes = {"decided_by": by.signature, "reason": SUPERSEDED}
        moved = await self.store.transition(
            card.card_id, OPEN, Status.CANCELLED, self.clock(), changes
        )
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
        await self.records.announce(EventType.CARD_CLOSED, card)
        finished = len(card.results)
        if decider is None and card.decided_by is not None:
            decider = Decider(card.decided_by)
        await self.records.card_rows(
            card,
            card.calls[finished:],
            AuditStatus(str(card.status)),
            decider,
            audit_reason(card),
        )
        if card.page_call is not None:
            return  # not the bot's call: the page hears of it from the card
        answered = {m.get("tool_call_id") for m in conversation if m.get("role") == "tool"}
        reasons = self.team_reasons(card.site)
        for index, call_id in enumerate(card.tool_call_ids):
            if call_id not in answered:
                conversation.append(tool_message(call_id, told_to_bot(card, index, reasons)))

    async def after_close(self, card: Card, decider: Decider | None = None) -> None:
        """A card closed without running: tell everyone, then resume the paused turn."""
        conversation = await self.store.load_conversation(card.session_id)
        await self._closed(card, conversation, decider)
        await self._resume(card, conversation)

    async def _resume(self, card: Card, conversation: Conversation) -> None:
        """Continue the paused turn with the card's results in the conversation, if its
        session is still live: read afresh, since it may have ended while the calls ran
        (the visitor's record from before the claim would not know)."""
        if card.page_call is not None:
            return  # the page's card paused no turn
        session = await self.store.get_session(card.session_id, self.clock())
        if session is not None:
            await self.resume_turn(session, conversation)


def waiting_level(card: Card | None, card_id: str, level: int | None, teammate: Teammate) -> Card:
    """The card, if it waits on the team at ``level``; else the refusal to answer with."""
    if card is None or not visible_to_team(card, teammate):
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


def visible_to_team(card: Card, teammate: Teammate) -> bool:
    return card.approver == "team" and teammate.covers(card.site)


def _result_summary(action: Action | None, call: Call, outcome: Outcome) -> dict[str, Any]:
    """A call's result as the widgets see it, with sensitive names masked, and in words
    (``message``: the action's ``result_message``, else a short summary)."""
    name = call["action"]
    if action is None or not outcome.ok:  # an unknown action never runs
        return {"action": name, "status": "failed", "error": outcome.error}
    result = displayed(outcome.result, action.sensitive)
    return {
        "action": name,
        "status": "done",
        "result": bounded(result),
        "message": action.display.result(call["args"], result),
    }
