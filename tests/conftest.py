from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from signoff.demo import demo_app
from tests import support
from tests.llm_standin import StandInModel, standin_model
from tests.services import (
    LocalRedisCluster,
    cluster_store_url,
    empty_postgres_database,
    postgres_database,
    redis_cluster_missing,
    redis_cluster_prefix,
    redis_prefix,
    redis_store_url,
)
from tests.support import Server, running, settings


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This test run's Redis Cluster of three primaries: its ``redis-cluster://`` URL."""
    missing = redis_cluster_missing()
    if missing:
        pytest.fail(f"a Redis Cluster is needed: {missing} (install Redis 7)", pytrace=False)
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(params=["memory", "redis"])
async def each_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """Runs the test once per store: servers started through ``settings()`` use it.

    "redis-cluster" too where a module asks for it (indirect parametrization): the
    guarantee suite does. The other tests pass on a cluster too, but would add a minute.
    """
    if request.param == "memory":
        yield "memory://"
        return
    if request.param == "redis-cluster":
        cluster_url = request.getfixturevalue("redis_cluster")
        async with redis_cluster_prefix(cluster_url) as prefix:
            url = cluster_store_url(cluster_url, prefix)
            monkeypatch.setattr(support, "STORE_URL", url)
            yield url
        return
    async with redis_prefix() as prefix:
        url = redis_store_url(prefix)
        monkeypatch.setattr(support, "STORE_URL", url)
        yield url


@pytest.fixture
async def demo(tmp_path: Any) -> AsyncIterator[Server]:
    """The demo shop, served on a free port with a throwaway audit database."""
    async with running(demo_app(), settings(tmp_path)) as server:
        yield server


@pytest.fixture
async def model() -> AsyncIterator[StandInModel]:
    """A stand-in model server; every scripted reply must be asked for, and no more."""
    async with standin_model() as model:
        yield model
    assert model.unscripted == 0, "the bot sent a request no reply was scripted for"
    assert not model.script, "a scripted reply was never asked for"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_test_database() -> AsyncIterator[str]:
    """This test run's PostgreSQL database; tests take ``postgres_url``."""
    async with postgres_database() as url:
        yield url


@pytest.fixture
async def postgres_url(postgres_test_database: str) -> str:
    """The URL of a PostgreSQL database that is empty when the test starts."""
    await empty_postgres_database(postgres_test_database)
    return postgres_test_database


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A ``SIGNOFF_AUDIT`` URL for each audit backend, to a database empty at the start."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/audit.db"
    return str(request.getfixturevalue("postgres_url"))
