"""Deliveries that wait in the store until sent, so that one instance stopping loses none.

An ``Outbox`` splits its entries into lanes by card, so one card's entries keep their
order. Each lane lives in the store and is worked by one instance at a time, under a
lease the worker renews; when an instance stops, its lease lapses (or is given up at
shutdown) and another instance takes the lane and sends what waits there, starting with
the entry the stopped one may have been sending. Delivery is therefore at least once.

``offer`` never waits on the store: entries go to the store in the background, one lane
at a time so their order holds, retried while the store is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import zlib
from collections.abc import Callable, Coroutine
from typing import Any

from signoff.store import Store, StoreUnavailable

log = logging.getLogger("signoff.outbox")

# A lane's worker holds it this long unless renewed; it renews a third of the way in.
LEASE = 5.0
# How often an idle worker looks for entries another instance added, or for a lane
# whose holder stopped.
POLL = 0.25
# How long the background append waits before trying an unreachable store again.
APPEND_RETRY = 0.5

Send = Callable[[str], Coroutine[Any, Any, None]]
Dropped = Callable[[str], None]


class Lane:
    """One lane: its name in the store, the entries not yet handed to the store, and
    an event that wakes its worker when this instance adds an entry."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.unsent: asyncio.Queue[str] = asyncio.Queue()
        self.added = asyncio.Event()


class Outbox:
    """The lanes ``{name}:0`` .. ``{name}:{lanes-1}`` of one receiver, worked by ``send``.

    ``send`` must not raise for a delivery that failed for good: it gives up (and logs)
    itself; whatever it returns from, the entry is done. ``dropped`` hears of an entry
    its lane had no room for.
    """

    def __init__(
        self, store: Store, name: str, lanes: int, cap: int, send: Send, dropped: Dropped
    ) -> None:
        self.store = store
        self.lanes = [Lane(f"{name}:{index}") for index in range(lanes)]
        self.cap = cap  # entries per lane
        self.send = send
        self.dropped = dropped
        # Who this worker is to the store's leases: one per outbox and process.
        self.holder = secrets.token_hex(8)
        self.tasks: list[asyncio.Task[None]] = []
        # The workers end on it as well as on being cancelled: a store client may turn a
        # cancellation into a connection error, which they carry on from.
        self._closing = False

    def lane_of(self, card_id: str) -> Lane:
        # A hash every instance agrees on (Python's hash() differs per process).
        return self.lanes[zlib.crc32(card_id.encode()) % len(self.lanes)]

    def start(self) -> None:
        for lane in self.lanes:
            self.tasks.append(asyncio.create_task(self._append(lane)))
            self.tasks.append(asyncio.create_task(self._work(lane)))

    def offer(self, card_id: str, entry: str) -> None:
        """Queue ``entry`` behind the card's earlier ones; never waits or raises."""
        self.lane_of(card_id).unsent.put_nowait(entry)

    async def _append(self, lane: Lane) -> None:
        while not self._closing:
            entry = await lane.unsent.get()
            while True:
                try:
                    kept = await self.store.outbox_append(lane.name, entry, self.cap)
                except StoreUnavailable as exc:
                    if self._closing:  # reported lost by close()
                        lane.unsent.put_nowait(entry)
                        lane.unsent.task_done()
                        return
                    log.warning("outbox %s: store unreachable (%s); trying again", lane.name, exc)
                    await asyncio.sleep(APPEND_RETRY)
                    continue
                except Exception:  # a bug here must not stop the lane
                    log.exception("outbox %s: entry not kept", lane.name)
                    kept = False
                break
            if not kept:
                self.dropped(entry)
            lane.added.set()
            lane.unsent.task_done()

    async def _work(self, lane: Lane) -> None:
        while not self._closing:
            try:
                lane.added.clear()  # before looking, so an entry added after is not missed
                entry = await self._next(lane)
                if entry is None:
                    await self._idle(lane)
                elif await self._send_held(lane, entry):
                    await self.store.outbox_done(lane.name, self.holder, entry)
            except StoreUnavailable as exc:
                log.warning("outbox %s: store unreachable (%s)", lane.name, exc)
                await asyncio.sleep(POLL)
            except Exception:  # a bug here must not stop the lane
                log.exception("outbox %s: worker failed; going on", lane.name)
                await asyncio.sleep(POLL)

    async def _next(self, lane: Lane) -> str | None:
        """The lane's head, if this worker holds (or now takes) the lane."""
        if not await self.store.outbox_lease(lane.name, self.holder, LEASE):
            return None
        return await self.store.outbox_head(lane.name)

    async def _idle(self, lane: Lane) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL):
                await lane.added.wait()

    async def _send_held(self, lane: Lane, entry: str) -> bool:
        """Send ``entry`` while renewing the lease; False when the lease was lost first
        (another instance has the lane and sends the entry itself)."""
        sending = asyncio.create_task(self.send(entry))
        try:
            while True:
                done, _ = await asyncio.wait({sending}, timeout=LEASE / 3)
                if done:
                    sending.result()
                    return True
                if not await self.store.outbox_lease(lane.name, self.holder, LEASE):
                    log.warning("outbox %s: lease lost while sending", lane.name)
                    return False
        finally:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending

    async def flushed(self) -> None:
        """Return once every entry offered so far is in the store (or dropped)."""
        for lane in self.lanes:
            await lane.unsent.join()

    async def waiting(self) -> list[str]:
        """Every entry in this outbox's lanes, oldest first per lane."""
        return [e for lane in self.lanes for e in await self.store.outbox_entries(lane.name)]

    async def drained(self, poll: float = 0.05) -> None:
        """Return once nothing waits, here or in the store."""
        await self.flushed()
        # Polled: other instances empty these lanes too, unseen by this one.
        while await self.waiting():  # noqa: ASYNC110
            await asyncio.sleep(poll)

    async def close(self) -> list[str]:
        """Stop working, give up the lanes to the other instances, and return what was
        never handed to the store: it is lost with this process."""
        self._closing = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
        lost = []
        for lane in self.lanes:
            while not lane.unsent.empty():
                lost.append(lane.unsent.get_nowait())
            with contextlib.suppress(StoreUnavailable):
                await self.store.outbox_release(lane.name, self.holder)
        return lost
