from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from signoff.bots.demo import demo_app
from tests.llm_standin import StandInModel, standin_model
from tests.support import Server, running, settings


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
