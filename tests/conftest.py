from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from signoff.bots.demo import demo_app
from tests.services import empty_postgres_database, postgres_database
from tests.support import Server, running, settings


@pytest.fixture
async def demo(tmp_path: Any) -> AsyncIterator[Server]:
    """The demo shop, served on a free port with a throwaway audit database."""
    async with running(demo_app(), settings(tmp_path)) as server:
        yield server


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
