"""Writing and reading audit rows.

Params and results are redacted by the engine before they get here; this
module only stores what it is given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from signoff.audit.schema import audit_events, metadata


class AuditStatus(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"  # a later call of a chain that stopped at a failure
    REFUSED = "refused"


@dataclass
class AuditEntry:
    ts: datetime
    site: str
    session_id: str
    conversation_id: str
    user_id: str
    action: str
    kind: str
    status: AuditStatus
    params: dict[str, Any]
    card_id: str | None = None
    result: Any = None
    error: str | None = None
    decided_by: str | None = None
    duration_ms: float | None = None


class AuditError(ValueError):
    pass


class AuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    async def record(self, *entries: AuditEntry) -> None:
        if not entries:
            return
        rows = [{**asdict(e), "status": str(e.status)} for e in entries]
        async with self.engine.begin() as conn:
            await conn.execute(insert(audit_events), rows)

    async def rows(self, **filters: Any) -> list[dict[str, Any]]:
        """Rows matching equality filters (column=value), oldest first."""
        query = select(audit_events).order_by(audit_events.c.id)
        for name, value in filters.items():
            query = query.where(audit_events.c[name] == value)
        async with self.engine.connect() as conn:
            result = await conn.execute(query)
            return [dict(row._mapping) for row in result]


def open_audit(url: str) -> AuditLog:
    """The audit log for a ``SIGNOFF_AUDIT`` URL."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise AuditError(f"SIGNOFF_AUDIT: not a database URL: {url!r}") from exc
    if parsed.get_backend_name() != "sqlite":
        raise AuditError(f"SIGNOFF_AUDIT: unsupported database {url!r}; use sqlite:///path")
    return AuditLog(create_async_engine(parsed.set(drivername="sqlite+aiosqlite")))
