"""HTTP requests in /metrics: how long each took, by route, method and status."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signoff import metrics

UNMATCHED = "unmatched"  # a path no route serves: its text would make a label per scan


def route_of(scope: Scope) -> str:
    """The path template of the route that served the request (``/dashboard/cards/{card_id}``),
    rebuilt from the path and its parameters; ``unmatched`` if no route did."""
    if "endpoint" not in scope:
        return UNMATCHED
    path = str(scope["path"])
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    for name, value in scope.get("path_params", {}).items():
        path = path.replace(str(value), "{" + name + "}", 1) if value != "" else path
    return path or "/"


class MeasuredRequests:
    """ASGI middleware: times every HTTP request to the end of its response's body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            metrics.http_requests.labels(route_of(scope), scope["method"], str(status)).observe(
                time.perf_counter() - started
            )
