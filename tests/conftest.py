from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from signoff.bots.demo import demo_app
from tests.support import Server, running, settings


@pytest.fixture
async def demo(tmp_path: Any) -> AsyncIterator[Server]:
    """The demo shop, served on a free port with a throwaway audit database."""
    async with running(demo_app(), settings(tmp_path)) as server:
        yield server
