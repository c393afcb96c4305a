"""/healthz: whether the store and the audit database answer.

Anyone may ask, as a load balancer does, and each check queries both services; so the
answer is found at most once per ``HEALTH_TTL`` and shared by everyone who asks meanwhile,
however many ask.
"""

from __future__ import annotations

import asyncio
import logging
import time

from signoff.audit import AuditError, AuditLog
from signoff.logs import Repeated
from signoff.store import Store, StoreUnavailable

log = logging.getLogger("signoff.web")

HEALTH_TTL = 1.0  # seconds an answer is reused


class Health:
    def __init__(self, store: Store, audit: AuditLog) -> None:
        self.store = store
        self.audit = audit
        self.unhealthy = Repeated(log)
        self._down: list[str] = []
        self._checked_at = -HEALTH_TTL
        self._checking = asyncio.Lock()

    async def down(self) -> list[str]:
        """What does not answer: "store", "audit", both or neither. The reasons, which
        hold internal addresses, go to the log, not to whoever asked."""
        async with self._checking:
            if time.monotonic() - self._checked_at >= HEALTH_TTL:
                self._down = await self._check()
                self._checked_at = time.monotonic()
            return list(self._down)

    async def _check(self) -> list[str]:
        down = []
        try:
            await self.store.ping()
        except StoreUnavailable as exc:
            self.unhealthy.warning("health check: the store is unavailable: %s", exc)
            down.append("store")
        try:
            await self.audit.ping()
        except AuditError as exc:
            self.unhealthy.warning("health check: %s", exc)
            down.append("audit")
        if not down:
            self.unhealthy.ended()
        return down
