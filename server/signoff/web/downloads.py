"""A streamed download whose client must keep reading.

The server writes a download as fast as the client reads it; a client that stops reading
leaves the writer waiting, and whatever the download holds (an audit export holds a
database connection) held with it. Each write may wait ``idle_timeout`` seconds for the
client; past that the download is cut off. Whatever way it ends, ``close`` runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

log = logging.getLogger("signoff.web")


class _Stalled(Exception):
    """The client read nothing for the idle timeout."""


class Download(StreamingResponse):
    def __init__(
        self,
        pieces: AsyncIterator[str],
        *,
        close: Callable[[], Awaitable[None]],
        idle_timeout: float,
        media_type: str,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(pieces, media_type=media_type, headers=headers)
        self.close = close
        self.idle_timeout = idle_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.close()

    async def stream_response(self, send: Send) -> None:
        async def send_or_give_up(message: Message) -> None:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    await send(message)
            except TimeoutError:
                raise _Stalled from None

        try:
            await super().stream_response(send_or_give_up)
        except _Stalled:
            # Returning unfinished: the server closes the connection.
            log.warning(
                "a download was cut off: its client read nothing for %gs", self.idle_timeout
            )
