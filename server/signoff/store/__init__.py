"""Live state behind one interface: sessions, conversations, cards, frame history."""

from urllib.parse import parse_qsl, urlsplit

from signoff.store.base import (
    ClaimOutcome,
    News,
    SessionRecord,
    Store,
    StoreError,
    StoreUnavailable,
    Transition,
    TurnStart,
    max_frames_option,
)


def open_store(url: str) -> Store:
    """The store for a ``SIGNOFF_STORE`` URL."""
    if url.startswith("memory://"):
        from signoff.store.memory import MemoryStore

        return MemoryStore(max_frames_option(dict(parse_qsl(urlsplit(url).query))))
    if url.startswith(("redis://", "rediss://", "unix://", "redis-cluster://")):
        from signoff.store.redis import RedisStore

        return RedisStore.from_url(url)
    raise StoreError(
        f"SIGNOFF_STORE: unknown store URL {url!r}; use memory://, redis://host:port/db"
        " or redis-cluster://host:port,host:port"
    )


__all__ = [
    "ClaimOutcome",
    "News",
    "SessionRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Transition",
    "TurnStart",
    "open_store",
]
