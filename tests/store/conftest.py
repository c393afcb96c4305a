"""Fixtures of the store tests that talk to the test Redis directly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.services import REDIS_URL, redis_prefix


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own on the test Redis, emptied afterwards."""
    async with redis_prefix() as prefix:
        yield prefix


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    """A plain client of the test Redis, to look at or change what a store wrote."""
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()
