"""An outbox stops when closed even if its store swallows the cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from signoff.integrations.outbox import Outbox
from signoff.store import StoreUnavailable, open_store


async def hung_until_cancelled(*args: Any, **options: Any) -> Any:
    """A store call that hangs, and turns its cancellation into a connection error, as a
    Redis client can."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        raise StoreUnavailable("the connection was closed") from None


async def test_closing_ends_workers_whose_store_swallows_the_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = open_store("memory://")
    await store.start()
    monkeypatch.setattr(store, "outbox_append", hung_until_cancelled)
    monkeypatch.setattr(store, "outbox_lease", hung_until_cancelled)

    async def send(entry: str) -> None:
        raise AssertionError("nothing is sent")

    outbox = Outbox(store, "hooks", lanes=1, cap=10, send=send, dropped=lambda entry: None)
    outbox.start()
    outbox.offer("card1", "event1")
    await asyncio.sleep(0.05)  # both workers are in a store call
    async with asyncio.timeout(5):
        lost = await outbox.close()
    assert lost == ["event1"]
    await store.close()
