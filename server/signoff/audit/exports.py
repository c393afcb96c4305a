"""CSV exports on connections of their own, a few at a time.

A download streams for as long as its client reads, and holds a database connection all
the while; a client that stops reading holds it until it is cut off. Exports therefore
get a small pool of their own, and no more exports run at once than it has connections:
however many downloads stall, the connections that audit writes need (and so every card
that opens or ends) stay free. One more export is refused at once, never queued.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

RETRY_AFTER = 10  # seconds a refused export is told to wait


class ExportsBusy(Exception):
    """Every export slot is taken; the message says so, for the client."""

    retry_after = RETRY_AFTER


class Exports:
    def __init__(self, engine: AsyncEngine, limit: int) -> None:
        self.engine = engine  # its pool holds ``limit`` connections
        self.limit = limit
        self.running = 0

    def claim(self) -> Callable[[], None]:
        """A slot for one export, as the function that gives it back (calling it again
        does nothing); ExportsBusy if all ``limit`` are taken."""
        if self.running >= self.limit:
            raise ExportsBusy(
                f"{self.limit} audit exports are running, as many as this server runs at "
                f"once; try again in {RETRY_AFTER} seconds"
            )
        self.running += 1
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.running -= 1

        return release
