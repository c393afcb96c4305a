"""HTTP requests in /metrics: how long each took, by route, method and status.

Every label comes from a bounded set, whatever a client sends: the route is the template
of the route that served the request, never its path; the method one of the standard
ones or ``other``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signoff import metrics

UNMATCHED = "unmatched"  # no route served it
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_templates(routes: Sequence[BaseRoute], prefix: str = "") -> dict[object, str]:
    """Each endpoint the routes end in, and its path template (``/dashboard/cards/{card_id}``);
    a mounted app that no route of its own served counts as ``/static/{path}``."""
    found: dict[object, str] = {}
    for route in routes:
        if isinstance(route, Mount):
            found.setdefault(route.app, f"{prefix}{route.path}/{{path}}")
            for endpoint, template in route_templates(route.routes, prefix + route.path).items():
                found.setdefault(endpoint, template)
        elif isinstance(route, Route):
            found.setdefault(route.endpoint, prefix + route.path)
    return found


class MeasuredRequests:
    """ASGI middleware: times every HTTP request to the end of its response's body, by
    the template of the route that served it (the router leaves its endpoint in the
    scope)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.templates = route_templates(routes)

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
            route = self.templates.get(scope.get("endpoint"), UNMATCHED)
            method = scope["method"] if scope["method"] in METHODS else "other"
            metrics.http_requests.labels(route, method, str(status)).observe(
                time.perf_counter() - started
            )
