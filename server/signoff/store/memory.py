"""The in-memory store: one process, no services. The default and the demo's store.

Every method runs without awaiting in between reads and writes, so on one
event loop each is atomic, which is all the claim needs here.
"""

from __future__ import annotations

import json
import marshal
import operator
import time
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from itertools import islice
from typing import Any

from signoff.core.cards import CLAIMED, FINAL, OPEN, Card, Status, can_move
from signoff.core.conversation import Conversation
from signoff.store.base import (
    MAX_CARDS,
    MAX_FRAMES,
    ClaimOutcome,
    Listener,
    Listeners,
    News,
    SessionRecord,
    Store,
    Transition,
    TurnQueue,
    TurnStart,
)


class MemoryStore(Store):
    def __init__(self, max_frames: int = MAX_FRAMES) -> None:
        self.max_frames = max_frames
        self._sessions: dict[str, SessionRecord] = {}
        self._conversations: dict[str, tuple[Message, ...]] = {}
        self._frames: dict[str, list[tuple[int, str]]] = {}
        self._client_ids: dict[str, set[str]] = defaultdict(set)
        self._cards: dict[str, Card] = {}
        self._session_cards: dict[str, list[str]] = defaultdict(list)
        self._team_cards: dict[str, None] = {}  # ids of team cards, oldest first
        self._waiting: dict[str, None] = {}  # ids of cards waiting on teammates, oldest first
        self._records: dict[str, tuple[str, float]] = {}
        self._records_kept = 64
        # Cards still open or claimed: all the sweeper has to look at.
        self._live: set[str] = set()
        self._queue = TurnQueue()
        self._listeners = Listeners()
        self._outbox: dict[str, deque[str]] = defaultdict(deque)
        self._outbox_leases: dict[str, tuple[str, float]] = {}  # lane -> holder, until

    # Sessions -------------------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> None:
        self._sessions[session.session_id] = session.copy()

    async def get_session(self, session_id: str, now: float) -> SessionRecord | None:
        session = self._sessions.get(session_id)
        if session is None or session.expires_at <= now:
            return None
        return session.copy()

    async def touch_session(self, session_id: str, ttl: float, now: float) -> SessionRecord | None:
        session = self._sessions.get(session_id)
        if session is None or session.expires_at <= now:
            return None
        session.expires_at = max(session.expires_at, now + ttl)
        return session.copy()

    async def expired_sessions(self, now: float) -> list[str]:
        return [sid for sid, s in self._sessions.items() if s.expires_at <= now]

    async def end_session(self, session_id: str, reason: str) -> None:
        self._sessions.pop(session_id, None)
        self._conversations.pop(session_id, None)
        self._frames.pop(session_id, None)
        self._client_ids.pop(session_id, None)
        for card_id in self._session_cards.pop(session_id, []):
            self._forget_card(card_id)
        self._listeners.notify(session_id, News("end"))
        self._listeners.forget(session_id)

    # Conversation ---------------------------------------------------------------------
    async def load_conversation(self, session_id: str) -> Conversation:
        return self._conversation(session_id)

    def _conversation(self, session_id: str) -> Conversation:
        return list(self._conversations.get(session_id, ()))

    async def save_conversation(self, session_id: str, conversation: Conversation) -> None:
        if session_id not in self._sessions:
            return  # the session ended: nothing of it is kept
        kept = self._conversations.get(session_id, ())
        self._conversations[session_id] = _kept(kept, conversation)

    # Frame history --------------------------------------------------------------------
    async def append_frames(self, session_id: str, frames: Sequence[dict[str, Any]]) -> None:
        if session_id not in self._sessions:
            return  # the session ended: nothing of it is kept
        kept = self._frames.setdefault(session_id, [])
        first = kept[-1][0] + 1 if kept else 1
        # ASCII escapes: a lone surrogate in bot text must not make history unsendable.
        numbered = tuple(
            (seq, json.dumps({**frame, "seq": seq})) for seq, frame in enumerate(frames, first)
        )
        kept.extend(numbered)
        if len(kept) > self.max_frames:
            del kept[: len(kept) - self.max_frames]
        self._listeners.notify(session_id, News("frames", numbered))

    async def frames_after(self, session_id: str, seq: int) -> list[tuple[int, str]]:
        frames = self._frames.get(session_id)
        if not frames:
            return []
        # seq numbers rise by one with no gaps, so the index follows from the first kept.
        return frames[max(seq - frames[0][0] + 1, 0) :]

    async def last_seq(self, session_id: str) -> int:
        frames = self._frames.get(session_id)
        return frames[-1][0] if frames else 0

    # Cards ----------------------------------------------------------------------------
    async def add_card(self, card: Card) -> None:
        if card.session_id not in self._sessions:
            return  # the session ended: nothing of it is kept
        self._cards[card.card_id] = card.copy()
        card_ids = self._session_cards[card.session_id]
        card_ids.append(card.card_id)
        if card.approver == "team":
            self._team_cards[card.card_id] = None
        self._track(card)
        ended = (c for c in list(card_ids) if self._cards[c].status in FINAL)
        while len(card_ids) > MAX_CARDS and (oldest := next(ended, None)) is not None:
            card_ids.remove(oldest)
            self._forget_card(oldest)

    def _forget_card(self, card_id: str) -> None:
        self._cards.pop(card_id, None)
        self._team_cards.pop(card_id, None)
        self._waiting.pop(card_id, None)
        self._live.discard(card_id)

    async def get_card(self, card_id: str) -> Card | None:
        card = self._cards.get(card_id)
        return card.copy() if card else None

    async def session_cards(self, session_id: str) -> list[Card]:
        return [self._cards[c].copy() for c in self._session_cards.get(session_id, ())]

    async def open_cards(self, session_id: str) -> list[Card]:
        # Asked on every message: copy only the open cards, not the session's whole past.
        cards = (self._cards[c] for c in self._session_cards.get(session_id, ()))
        return [card.copy() for card in cards if card.status in OPEN]

    async def transition(
        self,
        card_id: str,
        expected: Collection[Status],
        new: Status,
        now: float,
        changes: dict[str, Any] | None = None,
        check_deadline: bool = False,
        level: int | None = None,
    ) -> Transition:
        card = self._cards.get(card_id)
        if card is None:
            return Transition(ClaimOutcome.MISSING, None)
        if card.status not in expected or (level is not None and card.level != level):
            return Transition(ClaimOutcome.CONFLICT, card.copy())
        if not can_move(card.status, new):
            raise ValueError(f"a card cannot move from {card.status} to {new}")
        if check_deadline and self._past_deadline(card, now):
            card.status = Status.EXPIRED
            card.updated_at = now
            self._track(card)
            return Transition(ClaimOutcome.EXPIRED, card.copy())
        for name, value in (changes or {}).items():
            setattr(card, name, value)
        card.status = new
        card.updated_at = now
        self._track(card)
        return Transition(ClaimOutcome.OK, card.copy())

    def _track(self, card: Card) -> None:
        if card.status is Status.WAITING:
            self._waiting.setdefault(card.card_id, None)
        else:
            self._waiting.pop(card.card_id, None)
        if card.status in OPEN or card.status in CLAIMED:
            self._live.add(card.card_id)
        else:
            self._live.discard(card.card_id)

    def _past_deadline(self, card: Card, now: float) -> bool:
        session = self._sessions.get(card.session_id)
        return now >= card.timeout_at or session is None or session.expires_at <= now

    async def due_cards(self, now: float) -> list[Card]:
        due = []
        for card in (self._cards[card_id] for card_id in self._live):
            open_and_late = card.status in OPEN and self._past_deadline(card, now)
            lease_over = card.status in CLAIMED and (card.lease_until or 0) <= now
            if open_and_late or lease_over:
                due.append(card.copy())
        return due

    async def team_cards(self, limit: int) -> list[Card]:
        newest = islice(reversed(self._team_cards), max(limit, 0))
        return [self._cards[card_id].copy() for card_id in newest]

    async def waiting_cards(self, limit: int) -> list[Card]:
        oldest = islice(self._waiting, max(limit, 0))
        return [self._cards[card_id].copy() for card_id in oldest]

    # Records --------------------------------------------------------------------------
    async def put_record(self, name: str, value: str, ttl: float) -> None:
        now = time.time()
        self._records[name] = (value, now + ttl)
        if len(self._records) >= 2 * self._records_kept:
            # Lapsed records are dropped in batches, so each put costs O(1) on average.
            for key in [k for k, (_, until) in self._records.items() if until <= now]:
                del self._records[key]
            self._records_kept = max(len(self._records), 64)

    async def get_record(self, name: str) -> str | None:
        value, until = self._records.get(name, (None, 0.0))
        return value if until > time.time() else None

    async def count_record(self, name: str, window: float) -> int:
        now = time.time()
        value, until = self._records.get(name, ("0", 0.0))
        count = int(value) + 1 if until > now else 1
        self._records[name] = (str(count), until if until > now else now + window)
        return count

    async def delete_record(self, name: str) -> None:
        self._records.pop(name, None)

    # Outbox ---------------------------------------------------------------------------
    async def outbox_append(self, lane: str, entry: str, cap: int) -> bool:
        entries = self._outbox[lane]
        if len(entries) >= cap:
            return False
        entries.append(entry)
        return True

    async def outbox_lease(self, lane: str, holder: str, ttl: float) -> bool:
        now = time.monotonic()
        current = self._outbox_leases.get(lane)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._outbox_leases[lane] = (holder, now + ttl)
        return True

    async def outbox_release(self, lane: str, holder: str) -> None:
        current = self._outbox_leases.get(lane)
        if current is not None and current[0] == holder:
            del self._outbox_leases[lane]

    async def outbox_head(self, lane: str) -> str | None:
        entries = self._outbox.get(lane)
        return entries[0] if entries else None

    async def outbox_done(self, lane: str, holder: str, entry: str) -> bool:
        current = self._outbox_leases.get(lane)
        entries = self._outbox.get(lane)
        held = current is not None and current[0] == holder and current[1] > time.monotonic()
        if not held or not entries or entries[0] != entry:
            return False
        entries.popleft()
        return True

    async def outbox_entries(self, lane: str) -> list[str]:
        return list(self._outbox.get(lane, ()))

    # Coordination ---------------------------------------------------------------------
    def _first_use(self, session_id: str, client_id: str) -> bool:
        if session_id not in self._sessions:
            return False  # the session ended: nothing more is handled for it
        seen = self._client_ids[session_id]
        if client_id in seen:
            return False
        seen.add(client_id)
        return True

    def turn(
        self, session_id: str, ttl: float, client_id: str | None = None
    ) -> AbstractAsyncContextManager[TurnStart | None]:
        return _Turn(self, session_id, client_id)  # one process: the lease never matters

    def subscribe(self, session_id: str, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(session_id, listener)


class _Turn:
    """A turn on the memory store: a class, not a generator, as it is taken at every
    message."""

    __slots__ = ("_client_id", "_held", "_session_id", "_store")

    def __init__(self, store: MemoryStore, session_id: str, client_id: str | None) -> None:
        self._store = store
        self._session_id = session_id
        self._client_id = client_id
        self._held: AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> TurnStart | None:
        store, session_id = self._store, self._session_id
        if self._client_id is not None and not store._first_use(session_id, self._client_id):
            return None
        held = store._queue.held(session_id)
        await held.__aenter__()
        try:
            conversation = store._conversation(session_id)
            start = TurnStart(lambda: conversation, await store.open_cards(session_id))
        except BaseException:
            await held.__aexit__(None, None, None)
            raise
        self._held = held
        return start

    async def __aexit__(self, *exc: object) -> None:
        if self._held is not None:
            await self._held.__aexit__(None, None, None)


Message = dict[str, Any]


def _kept(kept: tuple[Message, ...], conversation: Conversation) -> tuple[Message, ...]:
    """What the store keeps of a saved conversation.

    Messages it keeps already are kept as they are: a save is almost always the kept
    messages (less those the window dropped) and a few new ones after them, and the turns
    that load a conversation share its messages instead of copying them all each time (a
    message is read-only once it is in a conversation: docs/bots.md). New messages are
    copied, as JSON would give them back (as the Redis store keeps them): plain dicts,
    lists and strings, which the caller's later changes do not reach.
    """
    last = kept[-1] if kept else None
    start = len(conversation)
    while start and conversation[start - 1] is not last:
        start -= 1
    head = conversation[:start]
    if start and start <= len(kept) and all(map(operator.is_, head, kept[len(kept) - start :])):
        return (*head, *_plain(conversation[start:]))
    return tuple(_plain(conversation))  # not an append to what is kept: all copied


def _plain(messages: Conversation) -> Conversation:
    """A copy of the messages as JSON would give them back; by marshal, three to five times
    faster than JSON, for the messages the engine makes (dicts, lists and strings). What
    marshal refuses (a bot's str subclass as a call id, say) goes through JSON."""
    try:
        return marshal.loads(marshal.dumps(messages))
    except ValueError:
        return json.loads(json.dumps(messages))
