"""The real services tests run against, never fakes: Redis and PostgreSQL on this machine.

Redis: each test gets its own key prefix (``redis_prefix()``), whose keys are deleted
afterwards; ``PrivateRedis`` is a Redis server of a test's own that it can stop and start.

Redis Cluster: the ``redis_cluster`` fixture (tests/conftest.py) starts three primaries on
free ports once per test run (``LocalRedisCluster``) and stops them at its end; tests take
a key prefix on it with ``redis_cluster_prefix()``.

PostgreSQL: tests take the ``postgres_url`` fixture (tests/conftest.py), the URL of a
database that is empty when the test starts. One database is created per test run (its
name is unique, so runs in other checkouts do not meet) and dropped at the end; between
tests its schema is dropped and created again, which is much faster than a new database.
``postgres_database()`` gives a database of one's own, for a test that needs two. The
server comes from ``TEST_POSTGRES_URL``, an admin URL allowed to create databases.

A service that cannot be reached fails the test (it is never skipped), so a CI run
without the service fails rather than passes quietly.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError
from sqlalchemy.engine import URL, make_url

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def _url(database: str | None = None) -> URL:
    url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    return url if database is None else url.set(database=database)


async def _connect(url: URL) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url.render_as_string(hide_password=False), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        error = exc
    pytest.fail(  # outside the except block, so the report is this message alone
        f"PostgreSQL is not reachable at {url.render_as_string(hide_password=True)} "
        f"({error}). Start it (on Debian: {START_POSTGRES}), or point "
        "TEST_POSTGRES_URL at a server where this user may create databases.",
        pytrace=False,
    )


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A new, empty database with a unique name, dropped afterwards; yields its
    ``postgresql://`` URL, the form ``SIGNOFF_AUDIT`` takes."""
    name = f"signoff_test_{secrets.token_hex(6)}"
    admin = await _connect(_url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _url(name).render_as_string(hide_password=False)
    finally:
        admin = await _connect(_url())
        try:
            # FORCE: a test that failed halfway may have left connections open.
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def empty_postgres_database(url: str) -> None:
    """Drop everything in the database at ``url``, closing its other connections first."""
    conn = await _connect(make_url(url))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
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

    def __init__(self, directory: str, port: int, password: str | None = None) -> None:
        self.directory = directory
        self.port = port
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            "redis-server",
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", self.directory,
            *(["--requirepass", self.password] if self.password else []),
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = Redis(port=self.port, password=self.password)
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
async def private_redis(
    directory: str, port: int, password: str | None = None
) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(directory, port, password)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# Redis Cluster: three primaries of the test run's own, started once per run.
CLUSTER_NODES = 3
CLUSTER_START_TIMEOUT = 20.0


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher) is free too."""
    for _ in range(200):
        port = random.randint(20000, 39999)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class LocalRedisCluster:
    """Three ``redis-server --cluster-enabled yes`` on free ports in ``directory``, made
    one cluster with ``redis-cli --cluster create`` and no replicas."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The ``redis-cluster://`` URL of every node, without options."""
        return "redis-cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> None:
        try:
            for _ in range(CLUSTER_NODES):
                self._start_node(_cluster_port())
            addresses = [f"127.0.0.1:{port}" for port in self.ports]
            command = ["redis-cli", "--cluster", "create", *addresses]
            command += ["--cluster-replicas", "0", "--cluster-yes"]
            created = subprocess.run(command, capture_output=True, timeout=30, check=False)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout!r}")
            self._wait(lambda port: "cluster_state:ok" in self._cli(port, "cluster", "info"))
        except BaseException:
            self.stop()
            raise

    def _start_node(self, port: int) -> None:
        self._processes.append(
            subprocess.Popen(
                [
                    "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                    "--save", "", "--appendonly", "no", "--daemonize", "no",
                    "--dir", str(self.directory),
                ],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
        self.ports.append(port)
        self._wait(lambda port: self._cli(port, "ping") == "PONG", [port])

    def _cli(self, port: int, *command: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *command], capture_output=True, timeout=5, check=False
        )
        return done.stdout.decode().strip()

    def _wait(self, ready: Callable[[int], bool], ports: list[int] | None = None) -> None:
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT
        for port in ports or self.ports:
            while not ready(port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Redis Cluster node on port {port} did not get ready")
                time.sleep(0.05)

    def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes = []


def redis_cluster_missing() -> str | None:
    """Why a Redis Cluster cannot be started here, or None."""
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not found on PATH" if missing else None


@asynccontextmanager
async def redis_cluster_prefix(url: str) -> AsyncIterator[str]:
    """A fresh key prefix on the test run's Redis Cluster; its keys are deleted afterwards."""
    client = redis_client(url)
    prefix = f"signoff-test-{secrets.token_hex(4)}"
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def redis_client(store_url: str) -> Redis | RedisCluster:
    """A client of the Redis (or Redis Cluster) of a ``redis://`` (``redis-cluster://``)
    store URL, its options left out."""
    url = store_url.partition("?")[0]
    if url.startswith("redis-cluster://"):
        seed = url.removeprefix("redis-cluster://").split(",")[0]
        return RedisCluster.from_url(f"redis://{seed}", decode_responses=True)
    return Redis.from_url(url, decode_responses=True)


def cluster_store_url(cluster_url: str, prefix: str, **options: object) -> str:
    query = "&".join([f"prefix={prefix}", *(f"{k}={v}" for k, v in options.items())])
    return f"{cluster_url}?{query}"
