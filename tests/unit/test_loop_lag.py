"""LoopLag: near zero on an idle loop, about a pass over the ready callbacks on a busy one."""

from __future__ import annotations

import asyncio
import time

import pytest

from signoff.engine import loop_lag
from signoff.engine.loop_lag import LoopLag


async def test_an_idle_loop_has_almost_no_lag() -> None:
    lag = LoopLag()
    lag.seconds()
    await asyncio.sleep(0.5)
    assert lag.seconds() < 0.01


async def test_a_busy_loop_shows_its_lag() -> None:
    lag = LoopLag()
    lag.seconds()
    loop = asyncio.get_running_loop()
    ends = loop.time() + 0.6

    def hog() -> None:  # a callback that holds the loop 30 ms, over and over
        time.sleep(0.03)
        if loop.time() < ends:
            loop.call_soon(hog)

    loop.call_soon(hog)
    await asyncio.sleep(0.7)
    assert lag.seconds() > 0.01


async def test_the_probe_stops_when_nobody_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_lag, "IDLE_AFTER", 0.1)
    lag = LoopLag()
    lag.seconds()
    await asyncio.sleep(0.3)
    assert lag._loop is None
    lag.seconds()
    assert lag._loop is asyncio.get_running_loop()
