from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from signoff.bots.demo import demo_app
from tests import support
from tests.services import redis_prefix, redis_store_url
from tests.support import Server, running, settings


@pytest.fixture(params=["memory", "redis"])
async def each_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """Runs the test once per store: servers started through ``settings()`` use it."""
    if request.param == "memory":
        yield "memory://"
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
