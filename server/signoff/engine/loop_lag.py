"""How late the event loop runs its timers: how busy this server is right now.

A probe timer is due every ``INTERVAL``; how late it runs, smoothed, is the loop's lag.
An idle server's lag is near zero; a saturated one's is about one pass over every ready
callback. The probe runs only while someone asks (it stops ``IDLE_AFTER`` seconds after
the last question), on whichever loop asked.
"""

from __future__ import annotations

import asyncio

INTERVAL = 0.05
IDLE_AFTER = 5.0
# Weight of each new reading in the smoothed lag.
SMOOTHING = 0.2


class LoopLag:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        self._asked = 0.0
        self._lag = 0.0

    def seconds(self) -> float:
        """The smoothed lag of the running loop (0 until the probe has run once)."""
        loop = asyncio.get_running_loop()
        self._asked = loop.time()
        if self._loop is not loop:
            self._loop, self._lag = loop, 0.0
            self._arm()
        return self._lag

    def _arm(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + INTERVAL
        self._loop.call_at(self._due, self._probe)

    def _probe(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._lag += SMOOTHING * (max(now - self._due, 0.0) - self._lag)
        if now - self._asked < IDLE_AFTER:
            self._arm()
        else:
            self._loop = None  # asked again, it starts afresh
