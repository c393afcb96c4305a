"""A bot message on its way to the widgets, its pieces gathered on the wire.

A model streams dozens to hundreds of pieces per answer; a frame per piece costs a store
write and a socket send each. So the first piece goes out at once (the visitor sees the
bot start), and later pieces are gathered and sent together at most every
``GATHER_SECONDS``, or as soon as one arrives after a quiet spell. ``message.end`` carries
the whole text, so pieces still gathered when the message ends need no frame of their
own: the widget shows the same text, in the same order.

Under load the gathering widens: a busy loop gives each stream its next piece about once
per pass, so pieces would always arrive after a "quiet spell" and go out one frame each,
just when frames cost the most. The gap between frames grows with the loop's lag
(``LAG_GATHER`` times it, up to ``GATHER_MAX``): a visitor sees text arrive in a few
chunks a second instead of dozens, and the server spends itself on fewer frames.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from signoff.core.frames import iso
from signoff.engine.loop_lag import LoopLag
from signoff.store import Store

GATHER_SECONDS = 0.025
GATHER_MAX = 0.25
LAG_GATHER = 4.0
LAG = LoopLag()


def gather_seconds() -> float:
    """The least time between two frames of a message, now."""
    return min(GATHER_MAX, max(GATHER_SECONDS, LAG_GATHER * LAG.seconds()))


class MessageStream:
    def __init__(self, store: Store, session_id: str, message_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self.message_id = message_id
        self.parts: list[str] = []
        self._sent = 0  # how many of ``parts`` are in frames already
        self._started = False
        self._next_send = 0.0  # when the next frame may go: the last one's time + the gap
        self._sending = asyncio.Lock()  # one write at a time, so frames keep their order
        self._timer: asyncio.TimerHandle | None = None
        self._late: set[asyncio.Task[None]] = set()  # sends the timer started

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def add(self, piece: str) -> None:
        self.parts.append(piece)
        wait = self._next_send - time.monotonic()
        if not self._started or (wait <= 0 and not self._sending.locked()):
            await self._send()
        elif self._timer is None:
            # Gathered pieces go out even if the bot falls quiet after them.
            delay = max(wait, 0.0)
            self._timer = asyncio.get_running_loop().call_later(delay, self._send_late)

    def _send_late(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self._send())
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    def _start(self) -> list[dict[str, Any]]:
        """``message.start``, if the message has not started yet."""
        if self._started:
            return []
        self._started = True
        start = {"type": "message.start", "message_id": self.message_id, "role": "bot"}
        return [{**start, "at": iso(time.time())}]

    async def _send(self) -> None:
        async with self._sending:
            if self._sent == len(self.parts) and self._started:
                return
            frames = self._start()
            text = "".join(self.parts[self._sent :])
            self._sent = len(self.parts)
            if text:
                frames.append(
                    {"type": "message.delta", "message_id": self.message_id, "text": text}
                )
            # The gap is read once per frame, not per piece: a busy loop hands a stream
            # a piece at every pass.
            self._next_send = time.monotonic() + gather_seconds()
            await self.store.append_frames(self.session_id, frames)

    async def whole(self, text: str) -> None:
        """A message written whole at once (the engine's own words): start and end."""
        self.parts.append(text)
        await self.end()

    async def end(self) -> None:
        """The message is whole: ``message.end`` with all its text (a message that never
        started is started first)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._sending:
            frames = self._start()
            self._sent = len(self.parts)
            end = {"type": "message.end", "message_id": self.message_id, "text": self.text}
            await self.store.append_frames(self.session_id, [*frames, end])
        # Finished already, or finding nothing left to send; a failure there is the same
        # store failure this end would have met, and reported by it.
        if self._late:
            await asyncio.gather(*self._late, return_exceptions=True)
