"""Live state behind one interface: sessions, conversations, cards, frame history."""

from signoff.store.base import ClaimOutcome, SessionRecord, Store, StoreError, Transition


def open_store(url: str) -> Store:
    """The store for a ``SIGNOFF_STORE`` URL."""
    if url.startswith("memory://"):
        from signoff.store.memory import MemoryStore

        return MemoryStore()
    raise StoreError(f"SIGNOFF_STORE: unknown store URL {url!r}; use memory://")


__all__ = ["ClaimOutcome", "SessionRecord", "Store", "StoreError", "Transition", "open_store"]
