"""The store interface: every piece of live state and every atomic step the engine needs.

Implemented by ``memory`` (one process); a store shared by several processes
implements the same interface. Anything that must not happen twice
(claiming a card, numbering a frame, first use of a client_id) is one atomic
operation here, so the engine never needs its own check-then-act.
"""

from __future__ import annotations

import abc
import asyncio
import functools
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from signoff.core.cards import OPEN, Card, Status
from signoff.core.conversation import Conversation


class StoreError(RuntimeError):
    pass


class StoreUnavailable(StoreError):
    """The store's service cannot be reached; the request may be retried later."""


# Frames kept per session; a reconnect from before the oldest kept frame gets a snapshot.
MAX_FRAMES = 2000
# Cards kept per session: adding one past this drops the oldest if it has ended, so a long
# session's cards cost a bounded amount to keep, slide and list.
MAX_CARDS = 100


def max_frames_option(query: dict[str, str]) -> int:
    """The ``max_frames`` option of a store URL's query, taken out of it."""
    try:
        value = int(query.pop("max_frames", MAX_FRAMES))
    except ValueError:
        value = 0
    if value < 1:
        raise StoreError("SIGNOFF_STORE: max_frames must be a positive integer")
    return value


@dataclass
class SessionRecord:
    session_id: str
    user_id: str
    site: str
    conversation_id: str
    created_at: float
    expires_at: float

    def copy(self) -> SessionRecord:
        # Asked at every message; dataclasses.replace inspects the fields each time.
        return SessionRecord(**vars(self))


class ClaimOutcome(StrEnum):
    OK = "ok"
    CONFLICT = "conflict"  # the card was not in an expected status: already decided
    EXPIRED = "expired"  # past its deadline; this call marked it expired
    MISSING = "missing"


@dataclass
class Transition:
    outcome: ClaimOutcome
    card: Card | None


@dataclass(frozen=True)
class News:
    """What a listener hears of its session: ``"frames"`` (new frames) or ``"end"``.

    ``frames`` are the new frames as (seq, JSON text) when the store has them at hand (it
    wrote them itself); empty when the listener must read them from the history.
    """

    event: str
    frames: tuple[tuple[int, str], ...] = ()


Listener = Callable[[News], None]


class TurnStart:
    """What a turn begins with: the cards still open, oldest first, and the conversation,
    decoded when first asked for (a decision's turn reads it through the store when its
    card runs or closes, and a sweep's turn not at all)."""

    def __init__(self, conversation: Callable[[], Conversation], open_cards: list[Card]) -> None:
        self._conversation = conversation
        self.open_cards = open_cards

    @functools.cached_property
    def conversation(self) -> Conversation:
        return self._conversation()


class Listeners:
    """Each session's listeners on this instance (its sockets), told of its news.

    ``changed``, if given, hears of a session whenever a listener joins it and when its
    last one leaves: a store that follows sessions elsewhere follows these.
    """

    def __init__(self, changed: Callable[[str], None] | None = None) -> None:
        self._by_session: dict[str, set[Listener]] = {}
        self._changed = changed

    def add(self, session_id: str, listener: Listener) -> Callable[[], None]:
        """Listen to the session; returns what stops listening."""
        self._by_session.setdefault(session_id, set()).add(listener)
        if self._changed is not None:
            self._changed(session_id)

        def remove() -> None:
            listeners = self._by_session.get(session_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._by_session[session_id]
                    if self._changed is not None:
                        self._changed(session_id)

        return remove

    def notify(self, session_id: str, news: News) -> None:
        for listener in list(self._by_session.get(session_id, ())):
            listener(news)

    def forget(self, session_id: str) -> None:
        """The session ended: its listeners hear nothing more."""
        self._by_session.pop(session_id, None)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._by_session

    def sessions(self) -> list[str]:
        return list(self._by_session)


class TurnQueue:
    """Turns of one session taken in this process queue here, one at a time, in order;
    a session with none waiting is forgotten."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: Counter[str] = Counter()

    def held(self, session_id: str) -> AbstractAsyncContextManager[None]:
        return _HeldTurn(self, session_id)

    def _enter(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        self._users[session_id] += 1
        return lock

    def _leave(self, session_id: str) -> None:
        self._users[session_id] -= 1
        if not self._users[session_id]:
            del self._users[session_id]
            del self._locks[session_id]


class _HeldTurn:
    """A session's place in its ``TurnQueue``: a class, not a generator, as it is entered
    at every turn."""

    __slots__ = ("_lock", "_queue", "_session_id")

    def __init__(self, queue: TurnQueue, session_id: str) -> None:
        self._queue = queue
        self._session_id = session_id

    async def __aenter__(self) -> None:
        self._lock = self._queue._enter(self._session_id)
        try:
            await self._lock.acquire()
        except BaseException:  # cancelled while waiting: no longer in the queue
            self._queue._leave(self._session_id)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
        self._queue._leave(self._session_id)


class Store(abc.ABC):
    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect; called once before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise StoreUnavailable when the store cannot serve requests."""

    # Sessions -------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_session(self, session: SessionRecord) -> None: ...

    @abc.abstractmethod
    async def get_session(self, session_id: str, now: float) -> SessionRecord | None:
        """The session, or None when it is unknown or past its expiry."""

    async def get_sessions(
        self, session_ids: Collection[str], now: float
    ) -> dict[str, SessionRecord]:
        """The sessions among ``session_ids`` that are live, by id; for listing many cards."""
        found = {sid: await self.get_session(sid, now) for sid in set(session_ids)}
        return {sid: session for sid, session in found.items() if session is not None}

    @abc.abstractmethod
    async def touch_session(self, session_id: str, ttl: float, now: float) -> SessionRecord | None:
        """Slide the idle expiry forward; None when the session is already gone."""

    @abc.abstractmethod
    async def expired_sessions(self, now: float) -> list[str]:
        """Sessions past their expiry that have not been ended yet."""

    @abc.abstractmethod
    async def end_session(self, session_id: str, reason: str) -> None:
        """Forget the session's live state and tell its listeners ("end")."""

    # Conversation ---------------------------------------------------------------------
    @abc.abstractmethod
    async def load_conversation(self, session_id: str) -> Conversation: ...

    @abc.abstractmethod
    async def save_conversation(self, session_id: str, conversation: Conversation) -> None:
        """Keep the conversation; dropped when the session has ended."""

    # Frame history --------------------------------------------------------------------
    @abc.abstractmethod
    async def append_frames(self, session_id: str, frames: Sequence[dict[str, Any]]) -> None:
        """Give the frames the session's next seqs, in order, keep them and wake listeners,
        in one step. Frames for a session that has ended are dropped.

        While this process holds the session's turn (``turn``), the store may hold the
        frames back briefly and write them together with what follows; they are written
        in order, and at the latest when the turn ends.
        """

    async def append_frame(self, session_id: str, frame: dict[str, Any]) -> None:
        """One frame: see ``append_frames``."""
        await self.append_frames(session_id, (frame,))

    @abc.abstractmethod
    async def frames_after(self, session_id: str, seq: int) -> list[tuple[int, str]]:
        """(seq, JSON text) of every kept frame with a larger seq, in order.

        Only the newest ``MAX_FRAMES`` frames of a session are kept: when the first
        frame returned is not ``seq + 1``, older ones were trimmed.
        """

    @abc.abstractmethod
    async def last_seq(self, session_id: str) -> int: ...

    # Cards ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_card(self, card: Card) -> None:
        """Keep a new card; past ``MAX_CARDS`` of its session, the oldest ended one goes."""

    @abc.abstractmethod
    async def get_card(self, card_id: str) -> Card | None: ...

    @abc.abstractmethod
    async def session_cards(self, session_id: str) -> list[Card]:
        """Every card of the session, oldest first."""

    async def open_cards(self, session_id: str) -> list[Card]:
        return [card for card in await self.session_cards(session_id) if card.status in OPEN]

    @abc.abstractmethod
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
        """Atomically move a card from one of ``expected`` to ``new``.

        This is the exactly-once claim: of any number of racing callers, one
        gets OK and the rest CONFLICT. With ``level``, the card must also be at
        that level of its team chain, so two teammates deciding the same level
        cannot both move it. With ``check_deadline``, a card past its timeout or
        whose session has expired is moved to ``expired`` instead (outcome
        EXPIRED, once) and never to ``new``.
        """

    @abc.abstractmethod
    async def due_cards(self, now: float) -> list[Card]:
        """Open cards past their deadline, and claimed cards whose lease ran out or (in a
        store shared by several instances) whose claiming instance has stopped."""

    @abc.abstractmethod
    async def team_cards(self, limit: int) -> list[Card]:
        """The newest ``limit`` cards that wait or waited on teammates, newest first.

        Kept while their sessions' live state is: what the dashboard and the API list.
        """

    @abc.abstractmethod
    async def waiting_cards(self, limit: int) -> list[Card]:
        """Up to ``limit`` cards waiting on teammates now, the longest waiting first."""

    # Records --------------------------------------------------------------------------
    @abc.abstractmethod
    async def put_record(self, name: str, value: str, ttl: float) -> None:
        """Keep a small value for ``ttl`` seconds: dashboard logins, Slack message ids."""

    @abc.abstractmethod
    async def get_record(self, name: str) -> str | None: ...

    @abc.abstractmethod
    async def count_record(self, name: str, window: float) -> int:
        """Add one to a counting record and return its count; the record lapses ``window``
        seconds after its first count (``delete_record`` starts it afresh). Atomic."""

    @abc.abstractmethod
    async def delete_record(self, name: str) -> None: ...

    # Outbox -------------------------------------------------------------------------
    # Deliveries to other systems wait in lanes here until sent. A lane keeps its entries
    # in order and is worked by one holder at a time, under a lease: the holder sends the
    # head, then removes it; a holder that stops leaves the head for the next one.

    #: Whether entries outlive this process (a shared store) or go with it (memory).
    outbox_survives: bool = False

    @abc.abstractmethod
    async def outbox_append(self, lane: str, entry: str, cap: int) -> bool:
        """Add ``entry`` at the lane's tail; False (and nothing added) when the lane
        already holds ``cap`` entries."""

    @abc.abstractmethod
    async def outbox_lease(self, lane: str, holder: str, ttl: float) -> bool:
        """Take the lane for ``holder`` for ``ttl`` seconds, or renew it if ``holder`` has
        it; False while another holder's lease runs. Atomic."""

    @abc.abstractmethod
    async def outbox_release(self, lane: str, holder: str) -> None:
        """Give up the lane if ``holder`` has it, so another may take it at once."""

    @abc.abstractmethod
    async def outbox_head(self, lane: str) -> str | None:
        """The lane's oldest entry, left in place; None when the lane is empty."""

    @abc.abstractmethod
    async def outbox_done(self, lane: str, holder: str, entry: str) -> bool:
        """Remove ``entry`` from the lane's head, if ``holder`` has the lane and ``entry``
        is still its head; False (and nothing removed) otherwise. Atomic."""

    @abc.abstractmethod
    async def outbox_entries(self, lane: str) -> list[str]:
        """Every entry waiting in the lane, oldest first."""

    # Coordination ---------------------------------------------------------------------
    @abc.abstractmethod
    def turn(
        self, session_id: str, ttl: float, client_id: str | None = None
    ) -> AbstractAsyncContextManager[TurnStart | None]:
        """Hold the session's turn: one holder at a time, on a lease of ``ttl`` seconds
        that is renewed while the holder works (a holder that dies frees the turn when
        its lease lapses). Yields the session's conversation and open cards as the turn
        begins.

        With ``client_id``, its first use is taken in the same step: a client_id the
        session presented before (or a session that has ended) yields None and holds
        nothing, so a re-sent message is handled once.

        While the turn is held, ``load_conversation`` and ``save_conversation`` of the
        session may be served by the turn, and the conversation and frames written
        together when it ends: a turn costs a shared store one round trip to begin and
        one to end.
        """

    @abc.abstractmethod
    def subscribe(self, session_id: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on news for the session; returns the unsubscribe function."""
