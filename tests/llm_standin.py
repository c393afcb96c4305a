"""A stand-in for an OpenAI-compatible model server, scripted per test.

It serves ``POST /v1/chat/completions`` on 127.0.0.1 and answers each request
with the next scripted ``Reply``: server-sent events in the Chat Completions
streaming format (``delta.content``, ``delta.tool_calls`` fragments,
``finish_reason``, ``[DONE]``), an HTTP error with headers, a delay, a stream
that stops. It records every request it gets.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support import free_port, serving

MODEL = "standin-1"
_ids = itertools.count(1)


@dataclass
class Reply:
    """One scripted answer. ``events`` are the SSE data lines; with ``status`` other than
    200, ``body`` is sent as JSON instead. ``delay`` waits before answering at all;
    ``hold_after`` events into the stream, it waits until ``release`` is set."""

    events: list[str] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    delay: float = 0.0
    hold_after: int | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Seen:
    """A request the stand-in received."""

    body: dict[str, Any]
    headers: dict[str, str]
    at: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body["messages"])

    def tool_results(self) -> list[dict[str, Any]]:
        """The contents of the tool messages after the last assistant message, in order."""
        results: list[dict[str, Any]] = []
        for message in self.messages:
            if message["role"] == "assistant":
                results = []
            elif message["role"] == "tool":
                results.append(json.loads(message["content"]))
        return results


Script = Reply | Callable[[Seen], Reply]


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    return json.dumps(
        {
            "id": "chatcmpl-standin",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _text_events(parts: tuple[str, ...]) -> list[str]:
    events = [chunk({"role": "assistant", "content": ""})]
    events.extend(chunk({"content": part}) for part in parts)
    return events


def answer(*parts: str) -> Reply:
    """A plain streamed answer, one ``delta.content`` per part."""
    return Reply([*_text_events(parts), chunk({}, "stop"), "[DONE]"])


def calls(
    *wanted: tuple[str, dict[str, Any] | str], text: tuple[str, ...] = (), interleave: bool = False
) -> Reply:
    """Tool calls, each streamed as an opening fragment (id, name) and argument pieces.

    Arguments given as a string are sent as they are (malformed JSON, say). With
    ``interleave``, the calls' fragments alternate, as some servers send them.
    """
    per_call: list[list[str]] = []
    for index, (name, args) in enumerate(wanted):
        arguments = args if isinstance(args, str) else json.dumps(args)
        cut = max(1, len(arguments) // 2)
        opening = {
            "index": index,
            "id": f"call_{next(_ids)}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        pieces = [arguments[:cut], arguments[cut:]]
        per_call.append(
            [chunk({"tool_calls": [opening]})]
            + [
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in pieces
            ]
        )
    if interleave:
        fragments = [f for group in itertools.zip_longest(*per_call) for f in group if f]
    else:
        fragments = [f for group in per_call for f in group]
    return Reply([*_text_events(text), *fragments, chunk({}, "tool_calls"), "[DONE]"])


def failure(status: int, headers: dict[str, str] | None = None, message: str = "") -> Reply:
    body = {"error": {"message": message or f"stand-in error {status}", "type": "server_error"}}
    return Reply(status=status, headers=headers or {}, body=body)


class StandInModel:
    def __init__(self) -> None:
        self.script: deque[Script] = deque()
        self.requests: list[Seen] = []
        self.unscripted = 0
        self.base_url = ""
        self._closing = asyncio.Event()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._reply, methods=["POST"])])

    def then(self, *replies: Script) -> None:
        """Answer the next requests with these replies, in order."""
        self.script.extend(replies)

    async def _pause(self, event: asyncio.Event | None, seconds: float | None) -> None:
        """Until ``event`` is set, ``seconds`` pass, or the stand-in shuts down."""
        waits = [asyncio.ensure_future(self._closing.wait())]
        if event is not None:
            waits.append(asyncio.ensure_future(event.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _reply(self, request: Request) -> Response:
        seen = Seen(await request.json(), dict(request.headers), time.monotonic())
        self.requests.append(seen)
        if not self.script:
            self.unscripted += 1
            return JSONResponse(
                {"error": {"message": "nothing scripted"}},
                status_code=500,
                headers={"x-should-retry": "false"},
            )
        scripted = self.script.popleft()
        reply = scripted(seen) if callable(scripted) else scripted
        if reply.delay:
            await self._pause(None, reply.delay)
        if reply.status != 200:
            return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
        return StreamingResponse(self._events(reply), media_type="text/event-stream")

    async def _events(self, reply: Reply) -> AsyncIterator[str]:
        for sent, event in enumerate(reply.events):
            if sent == reply.hold_after:
                await self._pause(reply.release, None)
            yield f"data: {event}\n\n"


@asynccontextmanager
async def standin_model() -> AsyncIterator[StandInModel]:
    """The stand-in, served by uvicorn on a free port of 127.0.0.1."""
    model = StandInModel()
    port = free_port()
    model.base_url = f"http://127.0.0.1:{port}/v1"
    config = uvicorn.Config(
        model.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    async with serving(config):
        try:
            yield model
        finally:
            model._closing.set()
