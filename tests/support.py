"""Helpers shared by the tests: a real server on a free port and a scripted widget client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
import websockets
from starlette.applications import Starlette

from signoff import Signoff
from signoff.config import Settings, Site
from signoff.core.frames import MAX_FRAME_BYTES

SECRET = "test-secret-0123456789abcdef"
ORIGIN = "http://127.0.0.1"
TIMEOUT = 5.0
# How long a test server may take to stop (its connections, then its lifespan's shutdown).
STOP_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The store servers under test use; the ``each_store`` fixture runs a test on each.
STORE_URL = "memory://"


def settings(tmp_path: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "secret": SECRET,
        "store": STORE_URL,
        "audit": f"sqlite:///{tmp_path}/audit.db",
        "sites": {"demo": Site("demo", ("http://127.0.0.1:*", "http://localhost:*"))},
        "sweep_interval": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


class Server:
    def __init__(self, app: Starlette, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"

    @property
    def engine(self) -> Any:
        return self.app.state.runtime.engine


@asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[None]:
    """Run a uvicorn server in this event loop until the block ends."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            # uvicorn returns without raising when the app's start-up fails.
            raise RuntimeError("the server stopped before it started; see its log above")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            # A test that hangs here would say nothing for minutes: name the step instead.
            async with asyncio.timeout(STOP_SECONDS):
                await task


@asynccontextmanager
async def running(
    signoff: Signoff,
    config: Settings,
    ws_max_size: int = MAX_FRAME_BYTES,
    port: int | None = None,
) -> AsyncIterator[Server]:
    """Serve ``signoff`` with uvicorn on 127.0.0.1, as ``signoff serve`` does (on ``port``
    to stand in for a server that restarted)."""
    app = signoff.asgi(config)
    port = port or free_port()
    options = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        ws_max_size=ws_max_size,
        ws_per_message_deflate=False,
        lifespan="on",
        log_level="warning",
        # Connections a test left open are closed after this, not waited for without end.
        timeout_graceful_shutdown=5,
    )
    async with serving(options):
        yield Server(app, port)


class Widget:
    """A scripted stand-in for the widget: speaks the protocol, records every frame."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def hello(
        self,
        site: str = "demo",
        session_token: str | None = None,
        last_seq: int = 0,
        user_token: str | None = None,
    ) -> dict[str, Any]:
        await self.send(
            {
                "type": "hello",
                "site": site,
                "user_token": user_token,
                "session_token": session_token,
                "last_seq": last_seq,
            }
        )
        self.welcome = await self.expect(lambda f: f["type"] in {"welcome", "error"})
        return self.welcome

    async def say(self, text: str, client_id: str | None = None) -> str:
        client_id = client_id or f"c-{uuid.uuid4().hex[:12]}"
        await self.send({"type": "message", "client_id": client_id, "text": text})
        return client_id

    async def decide(self, card: dict[str, Any], decision: str = "confirm", **extra: Any) -> None:
        frame = {
            "type": "decision",
            "card_id": card["card_id"],
            "decision": decision,
            "args_hash": card["args_hash"],
        }
        frame.update(extra)
        await self.send(frame)

    async def expect(
        self, match: Callable[[dict[str, Any]], bool], within: float = TIMEOUT
    ) -> dict[str, Any]:
        """The first matching frame not returned before, from those received or the next ones."""
        for frame in self.frames:
            if match(frame) and not frame.get("_seen"):
                frame["_seen"] = True
                return frame
        async with asyncio.timeout(within):
            while True:
                frame = json.loads(await self.ws.recv())
                self.frames.append(frame)
                if match(frame):
                    frame["_seen"] = True
                    return frame

    async def open_card(self, text: str = "wipe disk") -> dict[str, Any]:
        """Say hello (once), ask for something gated, and return the pending card."""
        if not self.welcome:
            await self.hello()
        await self.say(text)
        return await self.card("pending")

    async def card(self, status: str | None = None) -> dict[str, Any]:
        return await self.expect(
            lambda f: f["type"] == "card" and (status is None or f["status"] == status)
        )

    async def update(self, card_id: str, status: str) -> dict[str, Any]:
        return await self.expect(
            lambda f: (
                f["type"] == "card.update" and f["card_id"] == card_id and f["status"] == status
            )
        )

    async def error(self, code: str | None = None) -> dict[str, Any]:
        return await self.expect(
            lambda f: f["type"] == "error" and (code is None or f["code"] == code)
        )

    async def bot_says(self, fragment: str) -> dict[str, Any]:
        return await self.expect(lambda f: f["type"] == "message.end" and fragment in f["text"])

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Frames that arrive within ``seconds``; for asserting that nothing more came."""
        got = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    frame = json.loads(await self.ws.recv())
                    self.frames.append(frame)
                    got.append(frame)
        except TimeoutError:
            return got


@asynccontextmanager
async def widget(server: Server, origin: str = ORIGIN, **kwargs: Any) -> AsyncIterator[Widget]:
    async with websockets.connect(server.ws_url, origin=origin, max_size=None, **kwargs) as ws:
        yield Widget(ws)


async def assert_origin_refused(ws_url: str, origin: str, **connect: Any) -> None:
    """A page on ``origin`` is told at once that its origin is not allowed: the socket
    opens only to close with 1008 and that reason, and nothing it sends is read."""
    ws = await websockets.connect(ws_url, origin=origin, **connect)  # type: ignore[arg-type]
    with contextlib.suppress(websockets.ConnectionClosed):
        await ws.send(json.dumps({"type": "hello", "site": "demo", "last_seq": 0}))
        async with asyncio.timeout(TIMEOUT):
            await ws.recv()
        raise AssertionError(f"origin {origin} got a frame")
    await ws.wait_closed()
    assert (ws.close_code, ws.close_reason) == (1008, "origin not allowed")


class CountingShop:
    """A tiny app for guarantee tests: every executed call is recorded in ``runs``."""

    def __init__(self, **action_options: Any) -> None:
        self.runs: list[tuple[str, dict[str, Any]]] = []
        self.app = Signoff(bot=EchoCallBot())
        runs = self.runs

        @self.app.action(kind="destructive", message="Wipe {{ target }}?", **action_options)
        async def wipe(ctx: Any, target: str) -> dict[str, Any]:
            runs.append(("wipe", {"target": target}))
            return {"wiped": target}

        @self.app.action(kind="read")
        async def peek(ctx: Any, target: str) -> dict[str, Any]:
            runs.append(("peek", {"target": target}))
            return {"items": 3}


class EchoCallBot:
    """``wipe a`` → a wipe card, ``wipe a b`` → a chain (likewise for each action named in
    ``calls``); ``say x`` → x; after a card, it reports what came back."""

    def __init__(self, calls: Collection[str] = ("wipe",)) -> None:
        self.calls = calls

    async def respond(self, conversation: list[dict[str, Any]]) -> AsyncIterator[Any]:
        from signoff import Text, ToolCall

        last = conversation[-1]
        if last["role"] == "tool":
            yield Text("result: " + last["content"])
            return
        words = last["content"].split()
        if words[0] in self.calls:
            for target in words[1:]:
                yield ToolCall(words[0], {"target": target})
        elif words[0] == "say":
            yield Text(" ".join(words[1:]))
        else:
            yield Text("?")


class StreamingBot:
    """Says "Hello ", then waits for ``release`` before "world": shows text as it streams."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def respond(self, conversation: list[dict[str, Any]]) -> AsyncIterator[Any]:
        from signoff import Text

        yield Text("Hello ")
        await self.release.wait()
        yield Text("world")


async def expected_replay(server: Server, session_id: str, after: int) -> list[int]:
    """The seqs a replay after ``after`` must hold: every frame once, in order, except the
    deltas of messages whose full text (message.end) the replay also holds."""
    frames = [
        json.loads(text) for _, text in await server.engine.store.frames_after(session_id, after)
    ]
    ended = {f["message_id"] for f in frames if f["type"] == "message.end"}
    return [
        f["seq"] for f in frames if not (f["type"] == "message.delta" and f["message_id"] in ended)
    ]


def replayed_seqs(widget: Widget) -> list[int]:
    return [f["seq"] for f in widget.frames if "seq" in f and f["type"] != "welcome"]


async def audit_statuses(server: Server, action: str) -> list[str]:
    return [row["status"] for row in await server.engine.audit.rows(action=action)]


SETTLE_SECONDS = 5.0


async def settled_statuses(server: Server, action: str, expected: list[str]) -> list[str]:
    """The action's audit statuses once they are ``expected``, or as they are after
    SETTLE_SECONDS: a team decision's rows are written by a task that outlives its request."""
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    while (statuses := await audit_statuses(server, action)) != expected:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    return statuses


async def approve_over_api(base_url: str, card_id: str, key: str) -> httpx.Response:
    """``POST /api/v1/cards/{card_id}/resume`` approving, as a teammate's program would."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        return await http.post(
            f"/api/v1/cards/{card_id}/resume",
            json={"decision": "approve"},
            headers={"Authorization": f"Bearer {key}"},
        )
