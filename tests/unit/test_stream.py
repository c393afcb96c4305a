"""MessageStream: the first piece at once, later pieces gathered, the whole text at the end."""

from __future__ import annotations

import asyncio
import json

import pytest

from signoff.engine import stream as stream_module
from signoff.engine.stream import MessageStream
from signoff.store import SessionRecord
from signoff.store.memory import MemoryStore


async def frames_of(store: MemoryStore) -> list[dict[str, object]]:
    return [json.loads(text) for _, text in await store.frames_after("s1", 0)]


async def new_store() -> MemoryStore:
    store = MemoryStore()
    await store.create_session(SessionRecord("s1", "u1", "demo", "conv1", 0.0, 1e12))
    return store


async def test_the_first_piece_goes_out_at_once_and_a_fast_stream_is_gathered() -> None:
    store = await new_store()
    stream = MessageStream(store, "s1", "m1")
    await stream.add("Hel")
    assert [f["type"] for f in await frames_of(store)] == ["message.start", "message.delta"]
    for piece in ["lo", ", ", "wor", "ld"]:
        await stream.add(piece)
    await stream.end()
    frames = await frames_of(store)
    assert [f["type"] for f in frames] == ["message.start", "message.delta", "message.end"]
    assert frames[1]["text"] == "Hel" and frames[2]["text"] == "Hello, world"


async def test_pieces_gathered_before_a_quiet_spell_go_out_without_waiting_for_the_end() -> None:
    store = await new_store()
    stream = MessageStream(store, "s1", "m1")
    await stream.add("one ")
    await stream.add("two ")
    await stream.add("three ")
    await asyncio.sleep(stream_module.GATHER_SECONDS * 4)  # the bot falls quiet
    deltas = [f["text"] for f in await frames_of(store) if f["type"] == "message.delta"]
    assert deltas == ["one ", "two three "]
    await stream.add("four")  # after a quiet spell: at once
    deltas = [f["text"] for f in await frames_of(store) if f["type"] == "message.delta"]
    assert deltas == ["one ", "two three ", "four"]
    await stream.end()
    assert (await frames_of(store))[-1] == {
        "type": "message.end",
        "message_id": "m1",
        "text": "one two three four",
        "seq": 5,
    }


async def test_a_message_said_whole_is_a_start_and_an_end() -> None:
    store = await new_store()
    await MessageStream(store, "s1", "m1").whole("Sorry.")
    frames = await frames_of(store)
    assert [(f["type"], f.get("text")) for f in frames] == [
        ("message.start", None),
        ("message.end", "Sorry."),
    ]


class FixedLag:
    def __init__(self, seconds: float) -> None:
        self.lag = seconds

    def seconds(self) -> float:
        return self.lag


async def deltas_of_slow_pieces(lag: float, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ten pieces 30 ms apart (a busy server hands a stream its pieces about so)."""
    monkeypatch.setattr(stream_module, "LAG", FixedLag(lag))
    store = await new_store()
    stream = MessageStream(store, "s1", "m1")
    for n in range(10):
        await stream.add(f"{n} ")
        await asyncio.sleep(0.03)
    await stream.end()
    frames = await frames_of(store)
    assert frames[-1]["text"] == "".join(f"{n} " for n in range(10))
    return [str(f["text"]) for f in frames if f["type"] == "message.delta"]


async def test_a_busy_loop_gathers_pieces_that_a_quiet_one_sends_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quiet = await deltas_of_slow_pieces(0.0, monkeypatch)
    busy = await deltas_of_slow_pieces(0.04, monkeypatch)  # gathered for 160 ms
    assert len(quiet) >= 8  # 30 ms apart is a quiet spell of its own
    assert 2 <= len(busy) <= 4
    assert busy[0] == "0 "  # the first piece is never held back
    assert "".join(busy) == "".join(quiet)[: len("".join(busy))]
