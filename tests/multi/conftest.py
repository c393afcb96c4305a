"""Several real ``signoff serve`` processes sharing one Redis, as behind a load balancer."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from signoff.web.health import HEALTH_TTL
from tests.services import (
    cluster_store_url,
    redis_cluster_prefix,
    redis_prefix,
    redis_store_url,
)
from tests.support import SECRET, free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0


class Instance:
    """One server process on its own port."""

    def __init__(self, env: dict[str, str], config: Path, log: Path) -> None:
        self.env = env
        self.config = config
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        command = [sys.executable, "-m", "signoff.cli", "serve", "tests.multi.app:app"]
        command += ["--app-dir", str(ROOT), "--port", str(self.port), "--config", str(self.config)]
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *command, env=self.env, stdout=log, stderr=log
            )
        async with httpx.AsyncClient() as client:
            for _ in range(int(START_TIMEOUT / 0.05)):
                if self.process.returncode is not None:
                    raise RuntimeError(f"instance exited: {self.log.read_text()[-2000:]}")
                try:
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"instance did not start: {self.log.read_text()[-2000:]}")

    async def health(self) -> int:
        """/healthz's status as a load balancer's next probe sees it: after the answer
        the instance may be reusing (signoff.web.health) has run out."""
        await asyncio.sleep(HEALTH_TTL)
        async with httpx.AsyncClient() as client:
            return (await client.get(self.url + "/healthz", timeout=10)).status_code

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as when a machine dies."""
        if self.process is not None:
            self.process.kill()
            await self.process.wait()
            self.process = None

    async def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
            self.process = None


class Cluster:
    """Instances of one deployment: one Redis prefix, one audit database, one secret."""

    def __init__(self, tmp_path: Path, store: str, audit: str) -> None:
        self.tmp_path = tmp_path
        self.runs_file = tmp_path / "runs.txt"
        self.runs_file.touch()
        self.audit_url = audit
        self.config = tmp_path / "signoff.toml"
        self.config.write_text('[sites.demo]\norigins = ["http://127.0.0.1:*"]\n')
        self.env = {
            **os.environ,
            "SIGNOFF_SECRET": SECRET,
            "SIGNOFF_STORE": store,
            "SIGNOFF_AUDIT": audit,
            "SIGNOFF_SWEEP_INTERVAL": "0.2",
            "SIGNOFF_LEASE_MARGIN": "1",
            "TEST_RUNS_FILE": str(self.runs_file),
        }
        self.instances: list[Instance] = []

    async def start(self, **env: str) -> Instance:
        log = self.tmp_path / f"instance-{len(self.instances)}.log"
        instance = Instance({**self.env, **env}, self.config, log)
        self.instances.append(instance)
        await instance.start()
        return instance

    def runs(self) -> list[str]:
        return self.runs_file.read_text().splitlines()

    async def audit(self) -> list[tuple[str, str]]:
        """(action, status) of every audit row, oldest first."""
        db = await asyncpg.connect(self.audit_url)
        try:
            rows = await db.fetch("SELECT action, status FROM audit_events ORDER BY id")
        finally:
            await db.close()
        return [(row["action"], row["status"]) for row in rows]

    async def stop(self) -> None:
        for instance in self.instances:
            await instance.stop()


@pytest.fixture(params=["redis", "redis-cluster"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """The store the deployment's instances share: one Redis, or a Redis Cluster."""
    return str(request.param)


@pytest.fixture
async def cluster(
    tmp_path: Path, postgres_url: str, store_kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    """A deployment on Redis for live state and PostgreSQL for the audit log."""
    async with AsyncExitStack() as stack:
        if store_kind == "redis-cluster":
            cluster_url = request.getfixturevalue("redis_cluster")
            prefix = await stack.enter_async_context(redis_cluster_prefix(cluster_url))
            store = cluster_store_url(cluster_url, prefix)
        else:
            store = redis_store_url(await stack.enter_async_context(redis_prefix()))
        cluster = Cluster(tmp_path, store, postgres_url)
        try:
            yield cluster
        finally:
            await cluster.stop()


async def eventually(check: Any, within: float = 20.0) -> None:
    """Wait until ``check()`` is true, polling."""
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check()
