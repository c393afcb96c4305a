"""Running signoff inside a host app (``api.mount("/chat", chat)``).

Starlette and FastAPI do not run a mounted app's lifespan, and signoff's lifespan is what
starts its store, its audit log and its sweeper. The host runs it with
``mounted_lifespan``; until it has, every request is refused with a message naming the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("signoff.web")

NOT_STARTED = (
    "signoff has not started: its lifespan did not run, so its store and audit log are "
    "not open. A host app that mounts signoff must run it: "
    "FastAPI(lifespan=signoff.mounted_lifespan(chat)) or "
    "Starlette(lifespan=signoff.mounted_lifespan(chat)), chat being Signoff.asgi()'s app "
    "(docs/deploying.md, Mounting signoff in an existing app)"
)


def mounted_lifespan(chat: Starlette) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """The lifespan a host app passes on, for the signoff app ``chat`` it mounts. A host
    with a lifespan of its own enters this one inside it."""
    return lambda host: chat.router.lifespan_context(chat)


class Started:
    """Whether signoff's lifespan has started it, and has not yet stopped it."""

    def __init__(self) -> None:
        self.started = False


class RefusedUntilStarted:
    """ASGI middleware: requests before the lifespan has run get 503 and the reason (a
    socket is refused at its handshake); the log says it once, with the fix."""

    def __init__(self, app: ASGIApp, state: Started) -> None:
        self.app = app
        self.state = state
        self.said = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or self.state.started:
            await self.app(scope, receive, send)
            return
        if not self.said:
            log.error(NOT_STARTED)
            self.said = True
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})
            return
        await PlainTextResponse(NOT_STARTED, 503)(scope, receive, send)
