"""The shared connection against a real Redis: every coroutine's commands on one
connection, each reply to its own caller, and a lost or stuck connection reported as
redis-py reports it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis

from signoff.store.redis import RedisStore, _shared
from signoff.store.shared_connection import SharedConnection
from tests.services import private_redis, redis_store_url
from tests.support import free_port


@pytest.fixture
async def shared() -> AsyncIterator[SharedConnection]:
    connection = SharedConnection("127.0.0.1", 6379)
    try:
        yield connection
    finally:
        await connection.close()


async def test_each_caller_gets_its_own_reply_whatever_the_interleaving(
    shared: SharedConnection, prefix: str
) -> None:
    async def worker(n: int) -> list[int]:
        return [await shared.call("INCR", f"{prefix}:n:{n}") for _ in range(20)]

    counts = await asyncio.gather(*(worker(n) for n in range(300)))
    assert counts == [list(range(1, 21))] * 300
    replies = await shared.call_all(
        [
            ("SET", f"{prefix}:s", "é"),
            ("GET", f"{prefix}:s"),
            ("HSET", f"{prefix}:h", "a", 1, "b", 2.5),
            ("HGETALL", f"{prefix}:h"),
            ("GET", f"{prefix}:missing"),
        ]
    )
    assert replies == ["OK", "é", 2, ["a", "1", "b", "2.5"], None]


async def test_an_error_reply_is_raised_to_its_caller_only(
    shared: SharedConnection, prefix: str
) -> None:
    key = f"{prefix}:list"
    await shared.call("RPUSH", key, "x")
    wrong, missing, fine = await asyncio.gather(
        shared.call("INCR", key),
        shared.call("EVALSHA", "0" * 40, 0),
        shared.call("LLEN", key),
        return_exceptions=True,
    )
    assert isinstance(wrong, redis_errors.ResponseError) and "WRONGTYPE" in str(wrong)
    assert isinstance(missing, redis_errors.NoScriptError)
    assert fine == 1


async def test_bytes_that_are_not_utf8_spoil_only_their_own_reply(
    shared: SharedConnection, raw: Redis, prefix: str
) -> None:
    """Someone with write access to Redis cannot break the connection every command of
    the instance shares by writing bytes that do not decode."""
    await raw.execute_command("SET", f"{prefix}:bad", b"\xff\xfe{}")
    await shared.call("SET", f"{prefix}:good", "ok")
    bad, good = await shared.call_all([("GET", f"{prefix}:bad"), ("GET", f"{prefix}:good")])
    assert bad == "\ufffd\ufffd{}" and good == "ok"


async def test_a_cancelled_caller_does_not_shift_the_replies(
    shared: SharedConnection, prefix: str
) -> None:
    key = f"{prefix}:k"
    await shared.call("SET", key, "v")
    cancelled = asyncio.ensure_future(shared.call("INCR", f"{prefix}:c"))
    after = asyncio.ensure_future(shared.call("GET", key))
    await asyncio.sleep(0)  # both sent
    cancelled.cancel()
    assert await after == "v"
    assert await shared.call("GET", f"{prefix}:c") == "1"  # it still ran once


async def test_a_lost_connection_fails_its_waiting_commands_and_the_next_connects_again(
    shared: SharedConnection, raw: Redis, prefix: str
) -> None:
    own_id = await shared.call("CLIENT", "ID")
    # A blocking command holds its reply back: killed meanwhile, it fails at once.
    waiting = asyncio.ensure_future(shared.call("BLPOP", f"{prefix}:never", 10))
    await asyncio.sleep(0.1)
    await raw.client_kill_filter(_id=own_id)
    started = time.monotonic()
    with pytest.raises(redis_errors.ConnectionError, match="lost the connection"):
        await waiting
    assert time.monotonic() - started < 1
    assert await shared.call("PING") == "PONG"
    assert await shared.call("CLIENT", "ID") != own_id


async def test_an_error_reply_in_a_batch_is_raised_and_the_rest_still_run(
    shared: SharedConnection, prefix: str
) -> None:
    key = f"{prefix}:list"
    await shared.call("RPUSH", key, "x")
    with pytest.raises(redis_errors.ResponseError, match="WRONGTYPE"):
        await shared.call_all([("INCR", key), ("RPUSH", key, "y")])
    assert await shared.call("LLEN", key) == 2


async def test_a_reply_overdue_ends_the_connection_with_a_timeout(prefix: str) -> None:
    shared = SharedConnection("127.0.0.1", 6379, reply_timeout=0.3)
    try:
        stuck = asyncio.ensure_future(shared.call("BLPOP", f"{prefix}:never", 5))
        behind = asyncio.ensure_future(shared.call("PING"))
        started = time.monotonic()
        for waiting in (stuck, behind):
            with pytest.raises(redis_errors.TimeoutError, match=r"no reply from Redis in 0\.3 s"):
                await waiting
        assert time.monotonic() - started < 2
        assert await shared.call("PING") == "PONG"
    finally:
        await shared.close()


async def test_an_unreachable_redis_is_a_connection_error_naming_it() -> None:
    port = free_port()
    shared = SharedConnection("127.0.0.1", port)
    try:
        results = await asyncio.gather(
            shared.call("PING"), shared.call("PING"), return_exceptions=True
        )
        for result in results:
            assert isinstance(result, redis_errors.ConnectionError)
            assert f"cannot connect to Redis at 127.0.0.1:{port}" in str(result)
    finally:
        await shared.close()
    with pytest.raises(redis_errors.ConnectionError, match="closed"):
        await shared.call("PING")


async def test_password_and_database_are_applied_on_every_connection(tmp_path: Path) -> None:
    async with private_redis(str(tmp_path), free_port(), password="s3cret") as server:
        refused = SharedConnection("127.0.0.1", server.port, password="wrong")
        with pytest.raises(redis_errors.AuthenticationError, match="refused the connection"):
            await refused.call("PING")
        await refused.close()
        store = RedisStore.from_url(f"{server.url[:-2]}/3?prefix=t")
        assert store.shared is not None
        await store.start()
        try:
            await store.put_record("r", "v", 60)
            own_id = await store.shared.call("CLIENT", "ID")
            direct = Redis(port=server.port, password="s3cret", db=3, decode_responses=True)
            assert await direct.get("t:record:r") == "v"
            await direct.client_kill_filter(_id=own_id)
            await direct.aclose()
            # Connected again, logged in, and on database 3 again.
            assert await store.get_record("r") == "v"
        finally:
            await store.close()


def test_it_runs_on_uvloop_as_the_server_does() -> None:
    async def calls() -> list[object]:
        shared = SharedConnection("127.0.0.1", 6379)
        try:
            return [await shared.call("PING"), *await shared.call_all([("ECHO", "a")] * 2)]
        finally:
            await shared.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(calls()) == ["PONG", "a", "a"]


def test_tls_is_left_to_redis_py() -> None:
    plain = BlockingConnectionPool.from_url(redis_store_url("t").partition("?")[0])
    tls = BlockingConnectionPool.from_url("rediss://127.0.0.1:6380/0")
    assert isinstance(_shared(plain), SharedConnection)
    assert _shared(tls) is None
    assert RedisStore.from_url("rediss://127.0.0.1:6380/0").shared is None


async def test_a_unix_socket_redis_is_reached_through_the_shared_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "redis.sock"
    server = await asyncio.create_subprocess_exec(
        "redis-server", "--port", "0", "--unixsocket", str(path), "--save", "",
        "--appendonly", "no", "--dir", str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(250):
            if path.exists():
                break
            await asyncio.sleep(0.02)
        store = RedisStore.from_url(f"unix://{path}?db=2&prefix=t")
        assert store.shared is not None and store.shared.path == str(path)
        await store.start()
        try:
            await store.put_record("r", "v", 60)
            assert await store.get_record("r") == "v"
            assert "db=2" in await store.shared.call("CLIENT", "INFO")
        finally:
            await store.close()
    finally:
        server.terminate()
        await server.wait()
