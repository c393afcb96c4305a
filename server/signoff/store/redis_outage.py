"""What counts as Redis being unreachable, and how the Redis store reports it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis import exceptions as redis_errors

from signoff.store.base import StoreUnavailable

# A lost connection; on a cluster also a slot without a primary, until a replica takes over.
UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
)

P = ParamSpec("P")
R = TypeVar("R")


def unreachable(exc: BaseException) -> StoreUnavailable:
    """The error callers report (``unavailable`` to widgets, 503 to the API) for ``exc``."""
    return StoreUnavailable(f"the Redis store is unreachable: {exc}")


def reachable(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn a lost connection to Redis into StoreUnavailable, which callers report."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except UNAVAILABLE as exc:
            raise unreachable(exc) from exc

    return wrapper
