from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from signoff.bots.demo import demo_app
from tests import support
from tests.llm_standin import StandInModel, standin_model
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


@pytest.fixture
async def model() -> AsyncIterator[StandInModel]:
    """A stand-in model server; every scripted reply must be asked for, and no more."""
    async with standin_model() as model:
        yield model
    assert model.unscripted == 0, "the bot sent a request no reply was scripted for"
    assert not model.script, "a scripted reply was never asked for"
