"""What handlers read off incoming requests: bodies, with a cap a client cannot make the
server exceed, and who the client is."""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request

from signoff.core.deciders import Client


async def capped_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` bytes (declared or sent: read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def client_of(connection: HTTPConnection) -> Client:
    """The client's address and user agent (of a request or a WebSocket's handshake), as
    decisions record them."""
    address = connection.client.host if connection.client else None
    return address, connection.headers.get("user-agent")
