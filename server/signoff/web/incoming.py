"""What handlers read off incoming requests: bodies, with a cap a client cannot make the
server exceed, and who the client is."""

from __future__ import annotations

import ipaddress

from starlette.requests import HTTPConnection, Request

from signoff.core.deciders import Client, bounded_user_agent


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
    decisions record them: the user agent cut short, and an address only if it is one."""
    address = connection.client.host if connection.client else None
    return ip_address(address), bounded_user_agent(connection.headers.get("user-agent"))


def ip_address(text: str | None) -> str | None:
    """An IPv4 or IPv6 address in its standard spelling, or None for anything else.

    Behind a trusted proxy the address is whatever ``X-Forwarded-For`` said, and a client
    can put any text there; the peer's own address is gone by then, so nothing is kept.
    An IPv6 zone (``fe80::1%eth0``) is left out: it may hold any text, and means nothing
    off the host it names.
    """
    if text is None:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(type(address)(int(address)))


def root_path(connection: HTTPConnection) -> str:
    """The path signoff is served at: "" at the host's root, "/chat" when a host app
    mounts it there (or a proxy strips that prefix and uvicorn runs with --root-path)."""
    return str(connection.scope.get("root_path", "")).rstrip("/")
