"""The load generator: one client process holding many sessions, driven over a pipe.

Each process runs one asyncio loop (uvloop where installed) with the
``websockets`` client. The coordinator (``benchmarks.run``) sends it commands:

- ``open``: open sessions, each finished with its handshake (signoff: ``hello`` →
  ``welcome``; socket.io: the namespace connect; bare echo: the WebSocket itself);
- ``run``: round trips on every open session, closed-loop (each session starts
  the next as soon as the last ended: throughput) or paced (each session on a
  fixed schedule, latency measured from the scheduled start so a slow server
  cannot hide its queueing: latency at a given load);
- ``close``, ``exit``.

Every reply carries the process's CPU seconds, so a run can tell whether the
clients kept up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import resource
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from benchmarks.peers import STREAM_PREFIX, loop_factory, raise_open_files, stream_pieces

ORIGIN = "http://127.0.0.1"
SITE = "bench"
ROUND_TRIP_TIMEOUT = 30.0
RETRY_AFTER = 0.25  # after a rate_limited error, as a widget would
MESSAGE_TEXT = "hello, signoff"
CANCEL_TEXT = "cancel order 1001"


class BenchError(Exception):
    """A round trip that did not end as the protocol says; counted by its message."""


class RateLimited(Exception):
    pass


# Times are time.monotonic(): CLOCK_MONOTONIC, the same in every process on the machine and
# finer than uvloop's loop.time(), which counts whole milliseconds.
now = time.monotonic


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Sessions -----------------------------------------------------------------------------


class Session:
    """One client socket; a reader task hands each frame to whoever waits for it."""

    kind = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.sent = 0
        self.rate_limited = 0  # frames the server refused as too fast, then sent again
        self._want: Any = None  # frame -> result or None
        self._future: asyncio.Future[Any] | None = None

    async def _connect(self, url: str) -> ClientConnection:
        return await connect(
            url,
            origin=Origin(ORIGIN),
            compression=None,
            max_size=None,
            # The servers ping; the clients only answer.
            ping_interval=None,
            open_timeout=60,
            close_timeout=1,
        )

    async def open(self) -> None:
        raise NotImplementedError

    def start_reading(self) -> None:
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        error: BaseException = BenchError("connection closed")
        try:
            async for raw in self.ws:
                await self.on_frame(raw if isinstance(raw, str) else raw.decode())
        except ConnectionClosed:
            pass
        except Exception as exc:
            error = exc
        self._fail(error)

    async def on_frame(self, raw: str) -> None:
        want, future = self._want, self._future
        if want is None or future is None or future.done():
            return
        try:
            result = want(raw)
        except Exception as exc:
            self._want = None
            future.set_exception(exc)
            return
        if result is not None:
            self._want = None
            future.set_result(result)

    def _fail(self, error: BaseException) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_exception(error)

    async def request(self, frame: str, want: Any) -> Any:
        """Send ``frame`` and wait for the first frame that ``want`` turns into a result."""
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        self._future = loop.create_future()
        self._want = want
        if self.reader is not None and self.reader.done():
            raise BenchError("connection closed")
        await self.ws.send(frame)
        return await self._future

    async def round_trip(self, op: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


class SignoffSession(Session):
    kind = "signoff"

    async def open(self) -> None:
        self.ws = await self._connect(self.url)
        hello = {
            "type": "hello",
            "site": SITE,
            "user_token": None,
            "session_token": None,
            "last_seq": 0,
        }
        await self.ws.send(json.dumps(hello))
        welcome = json.loads(await self.ws.recv())
        if welcome.get("type") != "welcome":
            raise BenchError(f"hello answered with {welcome.get('type')}: {welcome.get('code')}")
        self.start_reading()

    async def _send_until_accepted(self, frame: dict[str, Any], want: Any) -> Any:
        text = json.dumps(frame)
        while True:
            try:
                return await self.request(text, want)
            except RateLimited:
                self.rate_limited += 1
                await asyncio.sleep(RETRY_AFTER)

    async def round_trip(self, op: str) -> None:
        self.sent += 1
        client_id = f"c-{self.sent}"
        if op in {"message", "stream"}:
            text, answer = _said(op, self.sent)
            message = {"type": "message", "client_id": client_id, "text": text}
            end = await self._send_until_accepted(message, _expect("message.end", client_id))
            if end["text"] != answer:
                raise BenchError(f"the bot answered {end['text'][:40]!r}…, not {answer[:40]!r}…")
            return
        message = {"type": "message", "client_id": client_id, "text": CANCEL_TEXT}
        card = await self._send_until_accepted(message, _expect("card", client_id))
        if card["status"] != "pending":
            raise BenchError(f"card opened as {card['status']}")
        decision = {
            "type": "decision",
            "card_id": card["card_id"],
            "decision": "confirm",
            "args_hash": card["args_hash"],
        }
        update = await self._send_until_accepted(
            decision, _expect("card.update", card["card_id"], card_id=card["card_id"])
        )
        if update["status"] != "done":
            raise BenchError(f"card ended {update['status']}")


def _said(op: str, n: int) -> tuple[str, str]:
    """What a session says for a ``message`` or ``stream`` round trip, and the answer."""
    if op == "stream":
        text = f"{STREAM_PREFIX}{n}"
        return text, "".join(stream_pieces(text))
    text = f"{MESSAGE_TEXT} {n}"
    return text, text


def _expect(kind: str, ref: str, card_id: str | None = None) -> Any:
    """A matcher for the frame that ends a step; errors about ``ref`` end it too."""

    def want(raw: str) -> dict[str, Any] | None:
        frame = json.loads(raw)
        kind_of = frame.get("type")
        if kind_of == "error":
            if frame.get("code") == "rate_limited" and frame.get("ref") in {ref, None}:
                raise RateLimited()
            raise BenchError(f"error {frame.get('code')}")
        if kind_of != kind:
            return None
        if card_id is not None and (
            frame.get("card_id") != card_id or frame.get("status") in {"running", "approved"}
        ):
            return None
        return frame

    return want


class EchoSession(Session):
    """A bare WebSocket: the frame comes back as it was sent."""

    kind = "ws-echo"

    async def open(self) -> None:
        self.ws = await self._connect(self.url)
        self.start_reading()

    async def round_trip(self, op: str) -> None:
        self.sent += 1
        said, answer = _said(op, self.sent)
        text = json.dumps({"type": "message", "client_id": f"c-{self.sent}", "text": said})

        def want(raw: str) -> Any:
            frame = json.loads(raw)
            return frame if frame.get("type") == "message.end" else None

        end = await self.request(text, want)
        if end["text"] != answer:
            raise BenchError("the server answered with other text")


class SocketIOSession(Session):
    """Engine.IO 4 over a WebSocket, spoken directly: no polling, no client library."""

    kind = "socketio"

    async def open(self) -> None:
        self.ws = await self._connect(self.url + "/socket.io/?EIO=4&transport=websocket")
        opening = await self.ws.recv()
        if not str(opening).startswith("0"):
            raise BenchError("no engine.io open packet")
        await self.ws.send("40")
        connected = await self.ws.recv()
        if not str(connected).startswith("40"):
            raise BenchError("namespace connect refused")
        self.start_reading()

    async def on_frame(self, raw: str) -> None:
        if raw == "2":  # engine.io ping: answering keeps the session
            assert self.ws is not None
            await self.ws.send("3")
            return
        await super().on_frame(raw)

    async def round_trip(self, op: str) -> None:
        self.sent += 1
        data = {"client_id": f"c-{self.sent}", "text": f"{MESSAGE_TEXT} {self.sent}"}
        packet = "42" + json.dumps(["message", data])

        def want(raw: str) -> Any:
            if not raw.startswith("42"):
                return None
            event, payload = json.loads(raw[2:])
            return payload if event == "message" and payload == data else None

        await self.request(packet, want)


KINDS: dict[str, type[Session]] = {
    "signoff": SignoffSession,
    "ws-echo": EchoSession,
    "socketio": SocketIOSession,
}


# Running ------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    late: int = 0
    completed: int = 0  # all round trips, warm-up and tail included


class Worker:
    def __init__(self) -> None:
        self.sessions: list[Session] = []

    async def open(
        self, kind: str, urls: list[str], count: int, first: int, concurrency: int
    ) -> dict[str, Any]:
        """Open ``count`` sessions; session ``first + i`` goes to ``urls[(first + i) % n]``."""
        errors: Counter[str] = Counter()
        slots = asyncio.Semaphore(concurrency)
        cls = KINDS[kind]
        started = time.monotonic()

        async def one(index: int) -> None:
            session = cls(urls[index % len(urls)])
            async with slots:
                try:
                    await session.open()
                except Exception as exc:
                    errors[_describe(exc)] += 1
                    await _quietly(session.close())
                    return
            self.sessions.append(session)

        await asyncio.gather(*(one(first + i) for i in range(count)))
        return {
            "opened": len(self.sessions),
            "errors": dict(errors),
            "seconds": time.monotonic() - started,
        }

    async def run(
        self,
        op: str,
        mode: str,
        rate: float,
        start_at: float,
        warmup: float,
        duration: float,
    ) -> dict[str, Any]:
        """Round trips until ``start_at + warmup + duration``; only those that end (closed
        loop) or are scheduled (paced) inside the last ``duration`` seconds count."""
        window = start_at + warmup
        end = window + duration
        tally = Tally()
        sessions = list(self.sessions)
        period = len(sessions) / rate if mode == "paced" and rate > 0 else 0.0
        jitter = random.Random(len(sessions))

        async def closed(session: Session) -> None:
            await _sleep_until(start_at)
            while now() < end:
                began = now()
                if not await self._one(session, op, tally):
                    return
                done = now()
                if window <= done <= end:
                    tally.latencies.append(done - began)

        async def paced(session: Session, offset: float) -> None:
            for k in itertools.count():
                scheduled = start_at + offset + k * period
                if scheduled >= end:
                    return
                if scheduled > now():
                    await asyncio.sleep(scheduled - now())
                elif now() - scheduled > 0.001:
                    tally.late += 1  # the last one ran past this one's slot
                if not await self._one(session, op, tally):
                    return
                if scheduled >= window:
                    tally.latencies.append(now() - scheduled)

        refused = sum(s.rate_limited for s in sessions)
        cpu = _cpu()
        if mode == "paced":
            tasks = [paced(s, jitter.uniform(0, period)) for s in sessions]
        else:
            tasks = [closed(s) for s in sessions]
        await asyncio.gather(*tasks)
        wall = max(now() - start_at, 1e-9)
        return {
            "latencies": tally.latencies,
            "errors": dict(tally.errors),
            "late": tally.late,
            "completed": tally.completed,
            "rate_limited": sum(s.rate_limited for s in sessions) - refused,
            "cpu": _cpu() - cpu,
            "wall": wall,
            "sessions": len(sessions),
        }

    async def _one(self, session: Session, op: str, tally: Tally) -> bool:
        """One round trip; a session that failed one is dropped, its state unknown."""
        try:
            async with asyncio.timeout(ROUND_TRIP_TIMEOUT):
                await session.round_trip(op)
            tally.completed += 1
            return True
        except Exception as exc:
            tally.errors[_describe(exc)] += 1
            self.sessions.remove(session)
            await _quietly(session.close())
            return False

    async def close(self) -> dict[str, Any]:
        sessions, self.sessions = self.sessions, []
        await asyncio.gather(*(_quietly(s.close()) for s in sessions))
        return {"closed": len(sessions)}


async def _sleep_until(when: float) -> None:
    if when > now():
        await asyncio.sleep(when - now())


async def _quietly(awaitable: Any) -> None:
    with contextlib.suppress(Exception):
        await awaitable


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:120]


async def _serve(conn: Connection) -> None:
    """Answer the coordinator's commands, one at a time, keeping the loop (and every
    held socket) alive in between; the pipe is read and written off the loop."""
    loop = asyncio.get_running_loop()
    worker = Worker()
    while True:
        command: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
        name = command.pop("cmd")
        cpu = _cpu()
        try:
            if name == "exit":
                await worker.close()
                return
            reply = await getattr(worker, name)(**command)
            reply["ok"] = True
        except Exception:
            reply = {"ok": False, "error": traceback.format_exc()}
        reply.setdefault("cpu", _cpu() - cpu)
        await loop.run_in_executor(None, conn.send, reply)


def worker_main(conn: Connection) -> None:
    """A client process's entry point (multiprocessing target)."""
    raise_open_files()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(_serve(conn))
