"""The Redis store's turns: a turn this instance holds, its lease, and the frames it holds back.

A turn is two scripts: ``begin.lua`` (first use of the client_id, the turn lock, the
conversation and the open cards) and ``write.lua`` (the frames and conversation the turn
held back, and the lock's release); a turn that waits on a model or an action writes its
frames meanwhile, within ``WRITE_BEHIND``. The lease is renewed while the turn is held.
The store owns the turns and hands them its scripts (``begin``, ``write``, ``renew``),
which know the keys.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar

from redis import exceptions as redis_errors

from signoff.core.cards import Card
from signoff.core.conversation import Conversation
from signoff.store.base import TurnQueue, TurnStart
from signoff.store.redis_outage import UNAVAILABLE, unreachable

log = logging.getLogger("signoff.store")

# How soon a turn held by another instance is asked for again, at first and at most.
LOCK_POLL = 0.005
LOCK_POLL_MAX = 0.1
# How long a turn holds its frames back before writing them on its own (see append),
# and how long after one such write the next one is made: a model's stream reaches Redis
# in a write every WRITE_GAP at most.
WRITE_BEHIND = 0.01
WRITE_GAP = 0.05

# The turn the current task holds (tasks it starts inherit it): its conversation is served
# from the turn, and saved with the turn's end.
_HOLDING: ContextVar[HeldTurn | None] = ContextVar("signoff_redis_turn", default=None)


class HeldTurn:
    """A turn this instance holds: what it holds back, written together when it ends."""

    def __init__(self, token: str, conversation: str | None) -> None:
        self.token = token
        self.conversation = conversation  # the latest, as JSON text
        self.unsaved = False
        self.frames: list[str] = []
        self.writer: asyncio.Task[None] | None = None
        self.soon: asyncio.TimerHandle | None = None
        self.ending = False
        self.renewal: asyncio.TimerHandle | None = None


class HeldTurns:
    def __init__(
        self,
        *,
        instance: str,
        begin: Callable[[str, str, str, str], Awaitable[tuple[str, str, list[Card]]]],
        write: Callable[[str, Sequence[str], str, str], Awaitable[bool]],
        renew: Callable[[str, str, int], Awaitable[object]],
    ) -> None:
        """``begin``: one ``begin.lua`` for a session, client_id (or ``""``), token and lease
        in ms: ``"busy"``, ``"seen"`` or ``"held"``, with the conversation (JSON, or ``""``)
        and the open cards. ``write``: one ``write.lua`` for a session, frames, conversation
        (or ``""``) and the token releasing the turn (or ``""``); False when the token no
        longer held it. ``renew``: the lease of a session's turn, for a token and ms; false
        when lost."""
        self._instance = instance
        self._begin = begin
        self._write = write
        self._renew_lease = renew
        self._numbers = itertools.count()
        # The turns this instance holds, by session.
        self._turns: dict[str, HeldTurn] = {}
        self._renewals: set[asyncio.Task[None]] = set()
        self._queue = TurnQueue()

    @asynccontextmanager
    async def hold(
        self, session_id: str, ttl: float, client_id: str | None
    ) -> AsyncIterator[TurnStart | None]:
        # The session's turns on this instance wait for each other here, not in Redis.
        async with (
            self._queue.held(session_id),
            self._redis_turn(session_id, ttl, client_id) as turn,
        ):
            yield turn

    @asynccontextmanager
    async def _redis_turn(
        self, session_id: str, ttl: float, client_id: str | None
    ) -> AsyncIterator[TurnStart | None]:
        # Unique is all a holder's token needs to be (it is never shown outside Redis).
        token = f"{self._instance}-{next(self._numbers)}"
        lease = str(int(ttl * 1000))
        first_use = client_id or ""
        poll = LOCK_POLL
        try:
            while True:
                outcome, conversation, cards = await self._begin(
                    session_id, first_use, token, lease
                )
                if outcome != "busy":
                    break
                # Held by another instance. Asked again less and less often: a busy
                # server must not spend itself asking.
                first_use = ""  # taken already: only the lock is waited for
                await asyncio.sleep(poll * (0.5 + random.random()))
                poll = min(poll * 2, LOCK_POLL_MAX)
        except UNAVAILABLE as exc:
            raise unreachable(exc) from exc
        if outcome == "seen":
            yield None
            return
        held = HeldTurn(token, conversation or None)
        self._turns[session_id] = held
        holding = _HOLDING.set(held)
        loop = asyncio.get_running_loop()
        held.renewal = loop.call_later(ttl / 3, self._renew, session_id, held, ttl)
        try:
            yield TurnStart(functools.partial(_decoded, conversation), cards)
        finally:
            _HOLDING.reset(holding)
            await self._end_turn(session_id, held)

    async def _end_turn(self, session_id: str, held: HeldTurn) -> None:
        """Write what the turn held back and let the turn go, in one step."""
        held.ending = True  # no write behind starts from now on
        for handle in (held.renewal, held.soon):
            if handle is not None:
                handle.cancel()
        # A timer holds the turn in its arguments and context: dropped, not left as a
        # reference cycle for the collector.
        held.renewal = held.soon = None
        await self._written_behind(held)  # it keeps what it could not write
        if self._turns.get(session_id) is held:  # not if it lapsed and was taken again
            del self._turns[session_id]
        conversation = held.conversation if held.unsaved else None
        try:
            kept = await self._write(session_id, held.frames, conversation or "", held.token)
        except UNAVAILABLE as exc:
            log.warning("turn of session %s not ended in Redis: it lapses by itself", session_id)
            raise unreachable(exc) from exc
        if not kept:
            log.warning("the turn of session %s was lost before its holder finished", session_id)

    @staticmethod
    async def _written_behind(held: HeldTurn) -> None:
        """Once no write behind of the turn is under way. Another may have started by the
        time the caller resumes from one (a busy loop runs the timer first): waited for too."""
        while held.writer is not None:
            await asyncio.shield(held.writer)

    def _renew(self, session_id: str, held: HeldTurn, ttl: float) -> None:
        """Keep the lease while the holder works: a turn may run longer than one lease."""
        if self._turns.get(session_id) is not held:
            return
        task = asyncio.ensure_future(self._extend(session_id, held, ttl))
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)
        held.renewal = asyncio.get_running_loop().call_later(
            ttl / 3, self._renew, session_id, held, ttl
        )

    async def _extend(self, session_id: str, held: HeldTurn, ttl: float) -> None:
        try:
            kept = await self._renew_lease(session_id, held.token, int(ttl * 1000))
        except UNAVAILABLE as exc:
            log.warning("cannot renew the turn of session %s: %s", session_id, exc)
            return
        if not kept:
            log.warning("the turn of session %s was lost before its holder finished", session_id)

    def holding(self, session_id: str) -> HeldTurn | None:
        """The session's turn, if the caller is its holder (or works for it)."""
        held = self._turns.get(session_id)
        return held if held is not None and held is _HOLDING.get() else None

    def append(self, session_id: str, texts: list[str]) -> bool:
        """Hold frames back with the session's turn; False when this instance holds none.
        The turn's frames go out together: those of one step of the event loop in one
        write, the rest with the turn's end."""
        held = self._turns.get(session_id)
        if held is None:
            return False
        held.frames.extend(texts)
        if held.writer is None and held.soon is None:
            # Soon, not at once: a turn that ends first (most do) writes all its frames
            # with its end; one that waits on a model or an action shows them meanwhile.
            held.soon = asyncio.get_running_loop().call_later(
                WRITE_BEHIND, self._write_soon, session_id, held
            )
        return True

    def _write_soon(self, session_id: str, held: HeldTurn) -> None:
        held.soon = None
        if held.writer is None and held.frames and not held.ending:
            held.writer = asyncio.create_task(self._write_behind(session_id, held))

    async def _write_behind(self, session_id: str, held: HeldTurn) -> None:
        texts, held.frames = held.frames, []
        try:
            await self._write(session_id, texts, "", "")
        except redis_errors.RedisError as exc:
            # Kept for the turn's end, which tries again and reports a failure.
            held.frames[:0] = texts
            log.warning("frames of session %s not written yet: %s", session_id, exc)
            return
        finally:
            held.writer = None
        if held.frames and held.soon is None and not held.ending:
            # More came meanwhile (a model streaming): written together, WRITE_GAP on.
            held.soon = asyncio.get_running_loop().call_later(
                WRITE_GAP, self._write_soon, session_id, held
            )

    async def catch_up(self, session_id: str) -> None:
        """Write what the session's turn holds back, before a write that must follow it."""
        held = self._turns.get(session_id)
        if held is None:
            return
        await self._written_behind(held)
        if held.frames or held.unsaved:
            texts, held.frames = held.frames, []
            unsaved, held.unsaved = held.unsaved, False
            conversation = held.conversation if unsaved else None
            try:
                await self._write(session_id, texts, conversation or "", "")
            except BaseException:
                # Kept for the turn's end, as a write behind keeps what it could not write.
                held.frames[:0] = texts
                held.unsaved = held.unsaved or unsaved
                raise


def _decoded(conversation: str | None) -> Conversation:
    return json.loads(conversation) if conversation else []
