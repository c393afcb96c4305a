"""A turn: the bot's steps, the reads they run at once, and the engine's own messages.

A turn starts with a visitor's message and runs bot steps until the bot stops talking
or asks for a gated call. Then the turn pauses on a card, with its whole state in the
saved conversation, and resumes when the card is decided, on whichever instance
receives the decision.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace

from signoff import metrics
from signoff.audit import AuditStatus
from signoff.core.actions import Kind, Registry
from signoff.core.bot import Bot, BotContext, step_of
from signoff.core.cards import Card, Status
from signoff.core.conversation import (
    Conversation,
    Text,
    ToolCall,
    assistant_message,
    call_ids,
    declined_in_turn,
    pending_tool_calls,
    ran_calls,
    tool_message,
    user_message,
    window,
)
from signoff.core.deciders import AUTO, NO_CLIENT, Client, Decider
from signoff.core.frames import ErrorCode, ProtocolError, iso
from signoff.core.turns import MAX_CALLS_PER_STEP, MAX_STEPS, CardPlan, PlannedCall, plan_step
from signoff.engine.calls import Calls
from signoff.engine.executor import Outcome
from signoff.engine.ids import new_id
from signoff.engine.records import Records
from signoff.engine.stream import MessageStream
from signoff.logs import withheld
from signoff.store import SessionRecord, Store

log = logging.getLogger("signoff.engine")

BOT_STEP_TIMEOUT = 60.0
# The store renews the turn lock while its holder works, so this is only how long a
# dead instance's lock keeps the session's next turn waiting.
TURN_LOCK_TTL = 6.0
SORRY = "Sorry, something went wrong on my side. Please try again."
ALREADY_DECLINED = "these exact calls were already declined; do not propose them again"
# What a question asked while a card waits for a teammate sees of the waiting calls, and
# what becomes of a call it proposes that would need a card.
STILL_WAITING = {
    "status": "waiting",
    "reason": "a teammate has not decided yet; the visitor sees the outcome on its card",
}
NOT_WHILE_WAITING = (
    "not now: a request waits for a teammate; until it is decided, only look-ups run"
)
TOO_MANY_STEPS = "I had to stop there: that took more steps than I'm allowed in one go."
# Turns of one session waiting for the turn lock (or running) on this instance; a message
# past it is refused, so a flood on one session queues no unbounded work.
MAX_QUEUED_TURNS = 3
GAVE_UP = "Alright, I won't do that. Is there anything else I can help with?"
# Looked up once: a label lookup takes a lock and checks its values, at every step.
STEPS_OK = metrics.bot_steps.labels("ok")
STEPS_FAILED = metrics.bot_steps.labels("failed")


OpenCard = Callable[[SessionRecord, Conversation, CardPlan], Awaitable[None]]
Withdraw = Callable[[Card, Decider, Conversation], Awaitable[None]]


def context_of(session: SessionRecord) -> BotContext:
    """Whose conversation a session's steps and calls are in."""
    return BotContext(session.session_id, session.user_id, session.site, session.conversation_id)


def visitor(session: SessionRecord) -> str:
    """How a visitor's decisions are signed in cards, frames and the audit log."""
    return f"user:{session.user_id}"


async def save(store: Store, session_id: str, conversation: Conversation) -> None:
    """Keep the conversation, in the window a turn loads (``core.conversation.window``)."""
    await store.save_conversation(session_id, window(conversation))


class Turns:
    def __init__(
        self,
        *,
        registry: Registry,
        bot: Bot,
        store: Store,
        records: Records,
        calls: Calls,
        open_card: OpenCard,
        withdraw: Withdraw,
    ) -> None:
        self.registry = registry
        self.step = step_of(bot)
        self.store = store
        self.records = records
        self.calls = calls
        self.open_card = open_card
        self.withdraw = withdraw
        self._queued: Counter[str] = Counter()

    def admit(self, session_id: str) -> None:
        """Count a message's turn as queued for the session; refused (``rate_limited``) when
        the session has as many queued here as it may. Synchronous, so messages arriving
        together cannot all pass before any is counted."""
        if self._queued[session_id] >= MAX_QUEUED_TURNS:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                "too many messages are waiting for an answer; wait for the bot",
            )
        self._queued[session_id] += 1

    async def handle_message(
        self, session: SessionRecord, text: str, client_id: str, client: Client = NO_CLIENT
    ) -> None:
        """An admitted message (``admit``); ``client`` is the address and browser of the
        visitor's socket."""
        try:
            await self._handle_message(session, text, client_id, client)
        finally:
            self._queued[session.session_id] -= 1
            if not self._queued[session.session_id]:
                del self._queued[session.session_id]

    async def _handle_message(
        self, session: SessionRecord, text: str, client_id: str, client: Client
    ) -> None:
        async with self.store.turn(session.session_id, TURN_LOCK_TTL, client_id) as turn:
            if turn is None:
                return  # a re-sent message: its frames are already in the history
            conversation, open_cards = turn.conversation, turn.open_cards
            # A page's cards (Signoff.call) are the page's: they pause no turn, and moving
            # on in the chat leaves them open.
            turn_cards = [card for card in open_cards if card.page_call is None]
            if any(card.status is Status.WAITING for card in turn_cards):
                await self._echo(session, text, client_id)
                await self._aside(session, conversation, text)
                return
            for card in turn_cards:
                # Moving on without deciding withdraws the open card.
                await self.withdraw(card, Decider.at(visitor(session), client), conversation)
            for call_id in pending_tool_calls(conversation):
                conversation.append(tool_message(call_id, {"status": "error", "error": "not run"}))
            conversation.append(user_message(text))
            await self._echo(session, text, client_id)
            await self.run(session, conversation)

    async def _aside(self, session: SessionRecord, conversation: Conversation, text: str) -> None:
        """A question while the turn waits for a teammate: the bot answers on a copy of the
        conversation in which the waiting calls read as waiting, and may only look things
        up. Nothing of it is kept: the paused turn resumes as it was, and the conversation
        the bot sees stays well-formed (every call answered once, in order)."""
        aside = [
            *conversation,
            *(tool_message(call_id, STILL_WAITING) for call_id in pending_tool_calls(conversation)),
            user_message(text),
        ]
        try:
            for _ in range(MAX_STEPS):
                calls = await self._bot_step(session, aside)
                if not calls:
                    return
                plan = plan_step(
                    self.registry,
                    calls,
                    set(),
                    0,
                    functools.partial(ran_calls, aside),
                    context_of(session),
                )
                await self._refuse(session, aside, plan.refused)
                # Only reads: a write that needs no card would still be forgotten with the
                # aside, and missing from what later conditions add up.
                reads = [c for c in plan.run_now if c.action and c.action.kind is Kind.READ]
                await self._run_now(session, aside, reads)
                held = [c for c in plan.run_now if c not in reads]
                for planned in [*held, *(plan.card.calls if plan.card else ())]:
                    error = {"status": "error", "error": NOT_WHILE_WAITING}
                    aside.append(tool_message(planned.tool_call_id, error))
                    await self.records.uncarded(
                        session, planned, AuditStatus.REFUSED, error=NOT_WHILE_WAITING
                    )
            await self.say(session, None, TOO_MANY_STEPS)
        except Exception as exc:
            log.error("aside failed in session %s\n%s", session.session_id, withheld(exc))
            await self.say(session, None, SORRY)

    async def _echo(self, session: SessionRecord, text: str, client_id: str) -> None:
        """The visitor's message, to every tab of the session."""
        frame = {
            "type": "message",
            "message_id": new_id("m"),
            "role": "user",
            "text": text,
            "client_id": client_id,
            "at": iso(time.time()),
        }
        await self.store.append_frame(session.session_id, frame)

    async def run(self, session: SessionRecord, conversation: Conversation) -> None:
        """Bot steps until the bot is done or a card opens; saves the conversation."""
        try:
            for _ in range(MAX_STEPS):
                calls = await self._bot_step(session, conversation)
                if not calls:
                    return
                declined, repeats = declined_in_turn(conversation)
                ran = functools.partial(ran_calls, conversation)
                plan = plan_step(self.registry, calls, declined, repeats, ran, context_of(session))
                await self._refuse(session, conversation, plan.refused)
                await self._run_now(session, conversation, plan.run_now)
                if plan.card is None:
                    continue
                if not plan.already_declined:
                    await self.open_card(session, conversation, plan.card)
                    return
                for planned in plan.card.calls:
                    content = {
                        "status": "already_declined",
                        "args_hash": plan.card.args_hash,
                        "error": ALREADY_DECLINED,
                    }
                    conversation.append(tool_message(planned.tool_call_id, content))
                if plan.stop_turn:
                    await self.say(session, conversation, GAVE_UP)
                    return
            await self.say(session, conversation, TOO_MANY_STEPS)
        except Exception as exc:
            # Without its message: a bot's or an action's exception may quote the visitor.
            log.error("turn failed in session %s\n%s", session.session_id, withheld(exc))
            await self.say(session, conversation, SORRY)
        finally:
            await save(self.store, session.session_id, conversation)

    async def _refuse(
        self, session: SessionRecord, conversation: Conversation, refused: list[PlannedCall]
    ) -> None:
        """Calls that can never run (unknown action, bad args): the bot is told why.

        A step proposes at most ``MAX_CALLS_PER_STEP`` calls; of a step over it, only that
        many are audited (the rest are logged), so a bot cannot flood the audit log.
        """
        for call in refused:
            conversation.append(
                tool_message(call.tool_call_id, {"status": "error", "error": call.error})
            )
        for call in refused[:MAX_CALLS_PER_STEP]:
            await self.records.uncarded(session, call, AuditStatus.REFUSED, error=call.error)
        if len(refused) > MAX_CALLS_PER_STEP:
            log.warning(
                "session %s: %d refused calls of one step not audited one by one",
                session.session_id,
                len(refused) - MAX_CALLS_PER_STEP,
            )

    async def _run_now(
        self, session: SessionRecord, conversation: Conversation, calls: list[PlannedCall]
    ) -> None:
        """Read calls and calls that need no card, in order."""
        for call in calls:
            assert call.action is not None
            # The bot's id for the call (the engine's own when the bot gave none) and its
            # place in the conversation, which a bot that reuses ids still changes.
            scope = f"{session.conversation_id}:{call.tool_call_id}:{len(conversation)}"
            outcome = await self.calls.run(
                call.action, call.args, session, scope, 0, AUTO.signature
            )
            conversation.append(tool_message(call.tool_call_id, outcome.tool_content()))
            await self.records.uncarded(session, call, audit_status(outcome), outcome=outcome)

    async def _bot_step(
        self, session: SessionRecord, conversation: Conversation
    ) -> list[ToolCall] | None:
        """One call of the bot, its text streamed; returns its tool calls, None on failure."""
        stream: MessageStream | None = None
        calls: list[ToolCall] = []
        used: set[str] | None = None  # the call ids the conversation holds, once a call comes
        started = time.perf_counter()
        try:
            async with asyncio.timeout(BOT_STEP_TIMEOUT):
                async for item in self.step(list(conversation), context_of(session)):
                    if isinstance(item, Text) and item.text:
                        if stream is None:
                            stream = MessageStream(self.store, session.session_id, new_id("m"))
                        await stream.add(item.text)
                    elif isinstance(item, ToolCall):
                        # An id the conversation already holds (a model that numbers its
                        # calls from 0 each time) would take the earlier call's answer.
                        used = call_ids(conversation) if used is None else used
                        fresh = item.id and item.id not in used
                        call_id = item.id if fresh else new_id("call")
                        used.add(call_id)
                        calls.append(replace(item, args=dict(item.args), id=call_id))
        except Exception as exc:
            STEPS_FAILED.observe(time.perf_counter() - started)
            log.error("bot step failed in session %s\n%s", session.session_id, withheld(exc))
            if stream is not None:
                await stream.end()
            await self.say(session, conversation, SORRY)
            return None
        STEPS_OK.observe(time.perf_counter() - started)
        if stream is not None:
            await stream.end()
        conversation.append(assistant_message(stream.text if stream else "", calls))
        return calls

    async def say(
        self, session: SessionRecord, conversation: Conversation | None, text: str
    ) -> None:
        """A whole bot message from the engine itself; kept in the conversation if given."""
        await MessageStream(self.store, session.session_id, new_id("m")).whole(text)
        if conversation is not None:
            conversation.append(assistant_message(text, []))


def audit_status(outcome: Outcome) -> AuditStatus:
    return AuditStatus.SUCCESS if outcome.ok else AuditStatus.FAILED
