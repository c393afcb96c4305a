"""One connection to Redis that every coroutine of an instance sends its commands on.

redis-py checks a connection out of its pool for each command, writes it, and waits for
the reply on that connection: 100 to 400 µs of the instance's CPU per command under
load, twenty times what Redis spends running it. Here the commands of every coroutine
go out together, one write per turn of the event loop, and their replies come back in
the order they were sent (Redis answers a connection's commands in order), parsed by
hiredis. A busy instance sends hundreds of commands per write and pays a few µs each.

Only for commands Redis answers at once: a blocking one (BLPOP, SUBSCRIBE, WAIT) would
hold up every reply behind it. Pub/sub keeps a connection of its own.

A lost connection fails the commands waiting on it with redis-py's ``ConnectionError``
(a reply that takes longer than ``reply_timeout`` with its ``TimeoutError``) and the next
command connects again: the caller sees the same errors as from redis-py and reports
them the same way. Replies are as Redis sends them (RESP2): a hash is a flat list.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis import exceptions as redis_errors
from redis._parsers.base import BaseParser

# Arguments of a command, as hiredis packs them.
Arg = str | int | float | bytes
# How often a connection with replies outstanding is checked for one overdue.
TIMEOUT_CHECK = 0.5


class _Protocol(asyncio.Protocol):
    """The connection: commands in one write per loop turn, replies matched in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reply_timeout: float) -> None:
        self.loop = loop
        self.reply_timeout = reply_timeout
        self.reader = hiredis.Reader(
            encoding="utf-8",
            # Bytes that are not UTF-8 (written by something else than signoff) spoil that
            # one reply, not the connection every command of the instance shares.
            errors="replace",
            protocolError=redis_errors.InvalidResponse,
            replyError=redis_errors.ResponseError,
        )
        self.transport: asyncio.Transport | None = None
        # Each command's future and when it was sent, oldest first.
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.unsent: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.lost: Exception | None = None
        self.checker: asyncio.TimerHandle | None = None

    # asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                if not self.waiting:
                    raise redis_errors.InvalidResponse("Redis sent a reply nobody asked for")
                future, _ = self.waiting.popleft()
                if future.done():
                    continue  # its caller was cancelled
                if isinstance(reply, redis_errors.ResponseError):
                    # As redis-py raises it (NOSCRIPT, LOADING, READONLY, WRONGPASS, ...).
                    future.set_exception(BaseParser.parse_error(str(reply)))
                else:
                    future.set_result(reply)
        except redis_errors.InvalidResponse as exc:
            self.fail(redis_errors.ConnectionError(f"bad reply from Redis: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(redis_errors.ConnectionError(f"lost the connection to Redis: {exc or 'closed'}"))

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # Commands ---------------------------------------------------------------------------
    def send(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        if self.lost is not None:
            raise redis_errors.ConnectionError(str(self.lost))
        future = self.loop.create_future()
        if not self.unsent:
            self.loop.call_soon(self.flush)
        # hiredis's stub reads its tuple of arguments as a tuple of one.
        self.unsent.append(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]
        if not self.waiting and self.checker is None:
            self.checker = self.loop.call_later(TIMEOUT_CHECK, self.check)
        self.waiting.append((future, self.loop.time()))
        return future

    def flush(self) -> None:
        if self.unsent and self.transport is not None and self.lost is None:
            self.transport.write(b"".join(self.unsent))
        self.unsent.clear()

    def check(self) -> None:
        """Give up on a connection whose oldest reply is overdue: Redis or the path to it
        is stuck, and every reply behind that one with it."""
        self.checker = None
        if not self.waiting or self.lost is not None:
            return
        if self.loop.time() - self.waiting[0][1] > self.reply_timeout:
            self.fail(redis_errors.TimeoutError(f"no reply from Redis in {self.reply_timeout} s"))
        else:
            self.checker = self.loop.call_later(TIMEOUT_CHECK, self.check)

    def fail(self, error: Exception) -> None:
        """End the connection, failing every command still waiting on it with ``error``."""
        if self.lost is None:
            self.lost = error
        if self.checker is not None:
            self.checker.cancel()
            self.checker = None
        self.writable.set()  # nobody waits to write on a lost connection
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class SharedConnection:
    """Commands to one Redis over one connection, made when first needed and again
    after it is lost."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = 2.0,
        reply_timeout: float = 5.0,
    ) -> None:
        """``path``: a Unix socket, instead of ``host`` and ``port``."""
        self.host, self.port, self.path = host, port, path
        self.db, self.username, self.password = db, username, password
        self.connect_timeout, self.reply_timeout = connect_timeout, reply_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._closed = False

    @property
    def where(self) -> str:
        return self.path or f"{self.host}:{self.port}"

    async def call(self, *args: Arg) -> Any:
        """One command's reply; an error reply is raised as redis-py raises it."""
        return await (await self._ready()).send(args)

    async def call_all(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands' replies, in order: sent in one write, whatever their number."""
        protocol = await self._ready()
        return list(await asyncio.gather(*(protocol.send(command) for command in commands)))

    async def _ready(self) -> _Protocol:
        """The connection, once it takes more to write (Redis reads what it was sent)."""
        protocol = await self._connected()
        if not protocol.writable.is_set():
            await protocol.writable.wait()
        return protocol

    async def close(self) -> None:
        self._closed = True
        if self._protocol is not None:
            self._protocol.fail(redis_errors.ConnectionError("the Redis connection was closed"))
            self._protocol = None

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self._closed:
            raise redis_errors.ConnectionError("the Redis connection was closed")
        # One attempt at a time, which every caller that needs the connection waits for.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connect_done)
        return await asyncio.shield(self._connecting)

    def _connect_done(self, attempt: asyncio.Future[_Protocol]) -> None:
        self._connecting = None
        if attempt.cancelled() or attempt.exception() is not None:
            return
        if self._closed:  # closed while connecting
            attempt.result().fail(redis_errors.ConnectionError("the Redis connection was closed"))
        else:
            self._protocol = attempt.result()

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()

        def made() -> _Protocol:
            return _Protocol(loop, self.reply_timeout)

        protocol: _Protocol | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.path is not None:
                    _, protocol = await loop.create_unix_connection(made, self.path)
                else:
                    _, protocol = await loop.create_connection(made, self.host, self.port)
                if self.password is not None:
                    user = [self.username] if self.username else []
                    await protocol.send(["AUTH", *user, self.password])
                if self.db:
                    await protocol.send(["SELECT", self.db])
        except BaseException as exc:
            if protocol is not None:
                protocol.fail(redis_errors.ConnectionError("not connected"))
            if isinstance(exc, redis_errors.ResponseError | redis_errors.AuthenticationError):
                raise redis_errors.AuthenticationError(
                    f"Redis at {self.where} refused the connection: {exc}"
                ) from None
            if isinstance(exc, OSError | TimeoutError):
                raise redis_errors.ConnectionError(
                    f"cannot connect to Redis at {self.where}: {exc or 'timed out'}"
                ) from exc
            raise
        return protocol
