"""The real services some tests run against: Redis (and PostgreSQL).

Each test gets its own key prefix or database and cleans up after itself. A
service that cannot be reached fails the test with a message saying how to start
it; it is never skipped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

REDIS_URL = os.environ.get("SIGNOFF_TEST_REDIS", "redis://127.0.0.1:6379/0")
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
)


async def delete_prefix(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[str]:
    """A fresh key prefix on the test Redis; its keys are deleted afterwards."""
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        raise RuntimeError(
            f"Redis at {REDIS_URL} is needed: {exc}; start it: {START_REDIS}"
        ) from exc
    prefix = f"signoff-test-{secrets.token_hex(4)}"
    try:
        yield prefix
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


def redis_store_url(prefix: str, **options: object) -> str:
    query = "&".join([f"prefix={prefix}", *(f"{k}={v}" for k, v in options.items())])
    return f"{REDIS_URL}?{query}"


class PrivateRedis:
    """A Redis server of the test's own that it can stop and start again, keeping its data
    in an append-only file (synced on every write) as a production Redis would."""

    def __init__(self, directory: str, port: int) -> None:
        self.directory = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            "redis-server",
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", self.directory,
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = Redis(port=self.port)
        try:
            for _ in range(250):
                try:
                    await client.ping()
                    return
                except (OSError, RedisError):
                    await asyncio.sleep(0.02)
        finally:
            await client.aclose()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    async def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            await self._process.wait()
            self._process = None


@asynccontextmanager
async def private_redis(directory: str, port: int) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(directory, port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
