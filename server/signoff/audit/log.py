"""Writing and reading audit rows.

Params and results are redacted by the engine before they get here; this
module only stores what it is given.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import event, insert, select
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
    """Writes rows by group commit: callers wait for their rows to be committed, and all
    rows that arrive while one transaction commits share the next one."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._queue: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        await self._commit_queued()  # whatever was still waiting
        await self.engine.dispose()

    async def record(self, *entries: AuditEntry) -> None:
        """Write the rows; returns once they are committed."""
        if not entries:
            return
        rows = [{**asdict(e), "status": str(e.status)} for e in entries]
        done = asyncio.get_running_loop().create_future()
        self._queue.append((rows, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        self._wake.set()
        await done

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._commit_queued()

    async def _commit_queued(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(audit_events), [r for rows, _ in batch for r in rows])
        except Exception as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    async def rows(self, **filters: Any) -> list[dict[str, Any]]:
        """Rows matching equality filters (column=value), oldest first."""
        query = select(audit_events).order_by(audit_events.c.id)
        for name, value in filters.items():
            query = query.where(audit_events.c[name] == value)
        async with self.engine.connect() as conn:
            result = await conn.execute(query)
            return [dict(row._mapping) for row in result]


def open_audit(url: str) -> AuditLog:
    """The audit log for a ``SIGNOFF_AUDIT`` URL: ``sqlite:///path`` or
    ``postgresql://user@host:port/db`` (``postgresql+asyncpg://`` too)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise AuditError(f"SIGNOFF_AUDIT: not a database URL: {url!r}") from exc
    if parsed.drivername in {"sqlite", "sqlite+aiosqlite"}:
        engine = create_async_engine(parsed.set(drivername="sqlite+aiosqlite"))
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return AuditLog(engine)
    if parsed.drivername in {"postgresql", "postgresql+asyncpg"}:
        if "sslmode" in parsed.query:  # libpq's name, as hosting providers hand out URLs
            parsed = parsed.difference_update_query(["sslmode"]).update_query_dict(
                {"ssl": parsed.query["sslmode"]}
            )
        # A connection the server restarted under is found out before a commit uses it.
        engine = create_async_engine(
            parsed.set(drivername="postgresql+asyncpg"), pool_pre_ping=True
        )
        return AuditLog(engine)
    shown = parsed.render_as_string(hide_password=True)
    raise AuditError(
        f"SIGNOFF_AUDIT: unsupported database {shown!r}; "
        "use sqlite:///path or postgresql://user@host:port/db"
    )


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # WAL: readers never block the writer; NORMAL: a commit waits for the log, not for
    # every page to reach the disk; still durable across a crash of the process.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
