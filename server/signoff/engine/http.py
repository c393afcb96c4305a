"""``ctx.http``: HTTP requests from actions, through one client shared by the engine.

The last response of a call is kept, so its audit row can say how the other system
answered (status and a short, redacted summary of the body).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

# Connections to another system are reused across calls; these bound how many stay open.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
# The largest body summarised for the audit log: read whole, so a JSON body is redacted
# field by field before it is cut. A larger one is recorded by its size alone.
MAX_SUMMARY_SOURCE = 1024 * 1024


def shared_client() -> httpx.AsyncClient:
    # Redirects are not followed: a call does what it was shown doing, at the URL its
    # action names, and the action sees a redirect as the answer it is.
    return httpx.AsyncClient(limits=LIMITS, follow_redirects=False)


class ActionHttp:
    """What ``ctx.http`` is during one call: ``await ctx.http.post(url, json=...)``.

    Every request is bounded by what is left of the call's ``run_timeout`` (and by a
    shorter ``timeout=`` if the action passes one).
    """

    def __init__(self, client: httpx.AsyncClient, run_timeout: float) -> None:
        self._client = client
        self._deadline = time.monotonic() + run_timeout
        self.last: httpx.Response | None = None

    async def request(self, method: str, url: str | httpx.URL, **options: Any) -> httpx.Response:
        left = max(self._deadline - time.monotonic(), 0.001)
        asked = options.pop("timeout", None)
        if isinstance(asked, int | float):
            left = min(left, asked)
        response = await self._client.request(method, url, timeout=left, **options)
        self.last = response
        return response

    async def get(self, url: str | httpx.URL, **options: Any) -> httpx.Response:
        return await self.request("GET", url, **options)

    async def post(self, url: str | httpx.URL, **options: Any) -> httpx.Response:
        return await self.request("POST", url, **options)

    async def put(self, url: str | httpx.URL, **options: Any) -> httpx.Response:
        return await self.request("PUT", url, **options)

    async def patch(self, url: str | httpx.URL, **options: Any) -> httpx.Response:
        return await self.request("PATCH", url, **options)

    async def delete(self, url: str | httpx.URL, **options: Any) -> httpx.Response:
        return await self.request("DELETE", url, **options)

    def answered(self) -> tuple[int, str | None, int] | None:
        """The last response's status, its whole body as text (None past
        MAX_SUMMARY_SOURCE) and its size in bytes; None if no response came."""
        if self.last is None:
            return None
        content = self.last.content
        if len(content) > MAX_SUMMARY_SOURCE:
            return self.last.status_code, None, len(content)
        text = content.decode(self.last.encoding or "utf-8", "replace")
        return self.last.status_code, text, len(content)
