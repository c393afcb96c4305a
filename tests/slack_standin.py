"""A stand-in for Slack's Web API on 127.0.0.1: the methods signoff calls, answered like Slack.

It serves ``POST /api/chat.postMessage``, ``chat.update`` and ``chat.postEphemeral``,
checks the bot token, records every call, and can answer the next call of a method
with 429 and ``Retry-After`` the way Slack rate-limits.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support import TIMEOUT, free_port, serving

BOT_TOKEN = "xoxb-standin-token"
CHANNEL = "C0APPROVALS"
METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral")


def texts(blocks: list[dict[str, Any]]) -> str:
    """Every piece of text in Block Kit blocks, one per line."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(found)


@dataclass
class Call:
    method: str
    body: dict[str, Any]

    def text(self) -> str:
        """Every text in the message's blocks and its fallback text, one per line."""
        return "\n".join([self.body.get("text", ""), texts(self.body.get("blocks", []))])

    def buttons(self) -> list[dict[str, Any]]:
        blocks = self.body.get("blocks", [])
        return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


class StandInSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.rate_limited: dict[str, int] = {}  # method -> how many calls get 429 first
        self.refused = 0  # 429s answered
        # method -> the next call of it is recorded, then answered only once this is set
        # (or the stand-in stops)
        self.holding: dict[str, asyncio.Event] = {}
        self.held: list[asyncio.Event] = []
        self._ts = itertools.count(1)
        self._changed = asyncio.Condition()
        self.url = ""

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def wait_for(
        self, match: Callable[[list[Call]], bool], within: float = TIMEOUT
    ) -> list[Call]:
        """The calls so far, once ``match`` holds for them."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: match(self.calls))
        return self.calls

    async def latest(self, method: str, fragment: str, within: float = TIMEOUT) -> Call:
        """The newest call of ``method``, once one whose text holds ``fragment`` came."""
        await self.wait_for(lambda _: any(fragment in c.text() for c in self.of(method)), within)
        return self.of(method)[-1]

    async def endpoint(self, request: Request) -> Response:
        method = request.path_params["method"]
        if method not in METHODS:
            return JSONResponse({"ok": False, "error": "unknown_method"}, status_code=404)
        if request.headers.get("authorization") != f"Bearer {BOT_TOKEN}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if self.rate_limited.get(method):
            self.rate_limited[method] -= 1
            self.refused += 1
            return JSONResponse(
                {"ok": False, "error": "ratelimited"}, status_code=429, headers={"Retry-After": "1"}
            )
        body = await request.json()
        async with self._changed:
            self.calls.append(Call(method, body))
            self._changed.notify_all()
        if (answer := self.holding.pop(method, None)) is not None:
            self.held.append(answer)
            await answer.wait()
        if method == "chat.postEphemeral":
            return JSONResponse({"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"})
        ts = body.get("ts") or f"1700000000.{next(self._ts):06d}"
        return JSONResponse({"ok": True, "channel": CHANNEL, "ts": ts, "message": body})


@asynccontextmanager
async def standin_slack() -> AsyncIterator[StandInSlack]:
    slack = StandInSlack()
    app = Starlette(routes=[Route("/api/{method}", slack.endpoint, methods=["POST"])])
    port = free_port()
    slack.url = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    async with serving(config):
        try:
            yield slack
        finally:
            for answer in slack.held:  # a stopping server waits for its answers
                answer.set()
