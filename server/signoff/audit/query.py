"""Reading the audit log: filters, keyset pages, and a stream of rows in constant memory.

The API, the dashboard and ``signoff audit export`` read through here alike, so the same
filter finds the same rows wherever it is given.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, and_, cast, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from signoff.audit.schema import audit_events
from signoff.core.teammates import TEAMMATE_PREFIX

MAX_PAGE = 500
STREAM_CHUNK = 2000  # rows fetched from the database per round trip when streaming
VISITOR_PREFIX = "user:"

# decided_by filters that name a sort of decider rather than one decider.
DECIDER_KINDS = {"visitor": VISITOR_PREFIX, "teammate": TEAMMATE_PREFIX}

# The CSV's columns, in order: every column of the table, documents as JSON text.
CSV_COLUMNS = (
    "id",
    "ts",
    "site",
    "session_id",
    "conversation_id",
    "user_id",
    "card_id",
    "action",
    "kind",
    "status",
    "decided_by",
    "level",
    "ip",
    "user_agent",
    "duration_ms",
    "params",
    "result",
    "response",
    "error",
    "seq",
    "prev_hash",
    "row_hash",
    "key_id",
)
DOCUMENTS = frozenset({"params", "result", "response"})


@dataclass(frozen=True)
class AuditFilter:
    """Which rows to read; every field given must hold (they combine with AND)."""

    statuses: tuple[str, ...] = ()  # any of them
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    conversation: str | None = None
    session: str | None = None
    card: str | None = None
    action: str | None = None
    # "auto", "visitor", "teammate", or one decider's signature ("teammate:ana")
    decided_by: str | None = None
    site: str | None = None
    sites: frozenset[str] | None = None  # the reader may see only these; None for all

    def where(self) -> ColumnElement[bool]:
        c = audit_events.c
        terms: list[ColumnElement[bool]] = []
        if self.statuses:
            terms.append(c.status.in_(self.statuses))
        if self.since is not None:
            terms.append(c.ts >= self.since)
        if self.until is not None:
            terms.append(c.ts < self.until)
        for column, value in (
            (c.conversation_id, self.conversation),
            (c.session_id, self.session),
            (c.card_id, self.card),
            (c.action, self.action),
            (c.site, self.site),
        ):
            if value is not None:
                terms.append(column == value)
        if self.decided_by is not None:
            prefix = DECIDER_KINDS.get(self.decided_by)
            terms.append(
                c.decided_by.startswith(prefix, autoescape=True)
                if prefix
                else c.decided_by == self.decided_by
            )
        if self.sites is not None:
            terms.append(c.site.in_(sorted(self.sites)))
        return and_(true(), *terms)


@dataclass(frozen=True)
class AuditPage:
    rows: list[dict[str, Any]]
    next_before: int | None  # the cursor of the next (older) page; None on the last one


def newest_first(where: ColumnElement[bool], before: int | None = None) -> Select[Any]:
    query = select(audit_events).where(where).order_by(audit_events.c.id.desc())
    if before is not None:
        query = query.where(audit_events.c.id < before)
    return query


async def read_page(
    engine: AsyncEngine, where: AuditFilter, limit: int = 50, before: int | None = None
) -> AuditPage:
    """Rows newest first, ``limit`` of them, older than the row ``before`` if given.

    Keyset pagination: a page is found through the primary key whatever its depth, and
    rows written meanwhile neither repeat nor skip rows on later pages.
    """
    limit = max(1, min(limit, MAX_PAGE))
    async with engine.connect() as conn:
        found = await conn.execute(newest_first(where.where(), before).limit(limit + 1))
        rows = [dict(r._mapping) for r in found]
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows, rows[-1]["id"] if more and rows else None)


async def stream_rows(
    engine: AsyncEngine, query: Select[Any], chunk: int = STREAM_CHUNK
) -> AsyncIterator[Sequence[Any]]:
    """The query's rows, ``chunk`` at a time, through a server-side cursor: memory stays
    flat however many rows there are."""
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=chunk))
        async for rows in result.partitions(chunk):
            yield rows


def export_query(where: AuditFilter) -> Select[Any]:
    """The CSV's columns, oldest first; documents read as the database's own JSON text,
    so a million rows are not parsed only to be written out again."""
    c = audit_events.c
    columns = [
        cast(c[name], Text).label(name) if name in DOCUMENTS else c[name] for name in CSV_COLUMNS
    ]
    return select(*columns).where(where.where()).order_by(c.id)


async def csv_chunks(engine: AsyncEngine, where: AuditFilter) -> AsyncIterator[str]:
    """The rows as CSV text: the header, then one piece per chunk of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield _drain(buffer)
    async for rows in stream_rows(engine, export_query(where)):
        writer.writerows(_csv_values(row) for row in rows)
        yield _drain(buffer)


def _csv_values(row: Sequence[Any]) -> Iterable[Any]:
    for value in row:
        if isinstance(value, datetime):
            yield value.isoformat(timespec="microseconds")
        else:
            yield value


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
