"""Reading the audit log: filters, keyset pages, and a stream of rows in constant memory.

The API, the dashboard and ``signoff audit export`` read through here alike, so the same
filter finds the same rows wherever it is given.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Select,
    String,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from signoff.audit.schema import audit_events
from signoff.core.chain import CHAINED, CHAINED_SINCE_3
from signoff.core.teammates import TEAMMATE_PREFIX

MAX_PAGE = 500
STREAM_CHUNK = 2000  # rows fetched from the database per round trip when streaming
VISITOR_PREFIX = "user:"

# decided_by filters that name a sort of decider rather than one decider.
DECIDER_KINDS = {"visitor": VISITOR_PREFIX, "teammate": TEAMMATE_PREFIX}

# The CSV's columns, in order: every column of the table, documents as JSON text, and
# the call in words beside them.
CSV_COLUMNS = ("id", *CHAINED, *CHAINED_SINCE_3, "chain_version", "row_hash")
DOCUMENTS = frozenset({"params", "result", "response"})
# Cells of text that visitors, bots and clients chose (user agents, forwarded addresses,
# action names, errors); documents are JSON, which never begins like a formula.
TEXT_COLUMNS = frozenset(
    name
    for name in CSV_COLUMNS
    if name not in DOCUMENTS and isinstance(audit_events.c[name].type, String)
)
# A cell beginning with one of these is a formula to a spreadsheet (OWASP's list for CSV
# injection). Such a text cell is written with an apostrophe before it, which spreadsheets
# take to mean text; the apostrophe shows in the cell, so the value reads as it was.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"


def spreadsheet_safe(text: str) -> str:
    """A text cell as the CSV writes it: marked as text if it would start a formula."""
    return TEXT_MARK + text if text.startswith(FORMULA_STARTS) else text


def as_utc(text: str) -> datetime:
    """An ISO 8601 time (``2026-11-01``, ``2026-11-01T14:30``, with or without an offset);
    one without an offset is taken as UTC. Raises ValueError for anything else."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
    source: AsyncEngine | AsyncConnection, query: Select[Any], chunk: int = STREAM_CHUNK
) -> AsyncGenerator[Sequence[Any], None]:
    """The query's rows, ``chunk`` at a time, through a server-side cursor: memory stays
    flat however many rows there are. On a connection given, inside its transaction."""
    if isinstance(source, AsyncEngine):
        async with source.connect() as conn:
            async for rows in stream_rows(conn, query, chunk):
                yield rows
        return
    result = await source.stream(query.execution_options(yield_per=chunk))
    try:
        async for rows in result.partitions(chunk):
            yield rows
    finally:
        await result.close()


def export_query(where: AuditFilter) -> Select[Any]:
    """The CSV's columns, oldest first; documents read as the database's own JSON text,
    so a million rows are not parsed only to be written out again."""
    c = audit_events.c
    columns = [
        cast(c[name], Text).label(name) if name in DOCUMENTS else c[name] for name in CSV_COLUMNS
    ]
    return select(*columns).where(where.where()).order_by(c.id)


async def csv_chunks(engine: AsyncEngine, where: AuditFilter) -> AsyncGenerator[str, None]:
    """The rows as CSV text: the header, then the rows, a piece at a time.

    RFC 4180 quoting, records ending in LF (as PostgreSQL's COPY writes them), a NULL as
    an empty cell, times in ISO 8601 with their offset (UTC), documents as JSON text. On
    PostgreSQL the database writes the CSV itself (COPY), so no row passes through Python
    one value at a time; on SQLite the rows are written here, to the same format.
    """
    pieces: AsyncGenerator[str, None]
    if engine.dialect.name == "postgresql":
        pieces = _copied_csv(engine, where)
    else:
        pieces = _written_csv(engine, where)
    try:
        async for piece in pieces:
            yield piece
    finally:
        await pieces.aclose()


# PostgreSQL: COPY (SELECT ...) TO STDOUT --------------------------------------------

# COPY sends a message per row and asyncpg hands them on as they come off the socket,
# often a few KiB at a time; they are joined into pieces of about this size, so the
# reader (and the HTTP response) handles a few thousand pieces, not one per read.
PIECE_BYTES = 256 * 1024
COPY_QUEUE = 2  # whole pieces waiting for the reader, at most
# The CSV's time, as Python's isoformat(timespec="microseconds") writes a UTC instant.
ISO_UTC = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'


def copy_query(where: AuditFilter) -> Select[Any]:
    """``export_query`` with every cell rendered as text by PostgreSQL, the way the CSV
    written in Python renders it: COPY only has to join and quote them."""
    c = audit_events.c
    columns: list[ColumnElement[Any]] = []
    for name in CSV_COLUMNS:
        column = c[name]
        if name == "ts":
            cell: ColumnElement[Any] = func.to_char(func.timezone("UTC", column), ISO_UTC)
        elif name in DOCUMENTS:
            cell = cast(column, Text)
        elif isinstance(column.type, Float):
            # Python writes a whole float as 100.0 where PostgreSQL writes 100; otherwise
            # both write the shortest text that reads back as the same float. (They still
            # differ on NaN, the infinities, -0.0 and fractions of 1e15 and more, which
            # durations in milliseconds do not reach.)
            whole = and_(column == func.trunc(column), func.abs(column) < literal(1e16))
            cell = case(
                (whole, cast(cast(column, BigInteger), Text) + literal(".0")),
                else_=cast(column, Text),
            )
        elif isinstance(column.type, Integer):
            cell = column  # the same digits either way
        else:
            # COPY quotes an empty string to tell it from NULL; Python writes both as an
            # empty cell. A cell that would start a formula is marked as text, as
            # spreadsheet_safe() marks it.
            cell = case(
                (func.left(column, 1).in_(FORMULA_STARTS), literal(TEXT_MARK) + column),
                else_=func.nullif(column, ""),
            )
        columns.append(cell.label(name))
    return select(*columns).where(where.where()).order_by(c.id)


async def _copied_csv(engine: AsyncEngine, where: AuditFilter) -> AsyncGenerator[str, None]:
    """PostgreSQL's own CSV, handed on as it arrives. asyncpg stops reading from the
    socket while a piece waits for a place in the queue, so a slow reader holds the
    database back and memory stays flat (a few pieces) however many rows there are."""
    async with engine.connect() as conn:
        compiled = copy_query(where).compile(
            dialect=conn.dialect, compile_kwargs={"render_postcompile": True}
        )
        driver = await _asyncpg_connection(conn)
        pieces: asyncio.Queue[bytes | None] = asyncio.Queue(COPY_QUEUE)

        async def copy() -> None:
            held: list[bytes] = []
            held_bytes = 0

            async def collect(data: bytes) -> None:
                nonlocal held_bytes
                held.append(data)
                held_bytes += len(data)
                if held_bytes >= PIECE_BYTES:
                    await pieces.put(b"".join(held))
                    held.clear()
                    held_bytes = 0

            try:
                # asyncpg inlines the arguments, quoted by the server (COPY takes none).
                await driver.copy_from_query(
                    str(compiled),
                    *_positional_arguments(compiled),
                    output=collect,
                    format="csv",
                    header=True,
                )
                if held:
                    await pieces.put(b"".join(held))
            finally:
                # The end, or an error the reader raises by awaiting the task; not when
                # the reader has gone and cancelled it.
                task = asyncio.current_task()
                if task is None or not task.cancelling():
                    await pieces.put(None)

        copying = asyncio.create_task(copy())
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while (data := await pieces.get()) is not None:
                yield decoder.decode(data)
            await copying
        finally:
            if not copying.done():
                copying.cancel()
                # asyncpg asks the server to cancel the COPY; whatever that ends in, the
                # connection is not trusted back into the pool.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await copying
                await conn.invalidate()


async def _asyncpg_connection(conn: AsyncConnection) -> Any:
    """The connection's asyncpg connection (``asyncpg.Connection``, untyped)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def _positional_arguments(compiled: SQLCompiler) -> list[Any]:
    """The statement's ``$n`` arguments in order, through their types' bind processing
    (the filter's times are checked aware and turned to UTC there)."""
    params = compiled.construct_params()
    processors = compiled._bind_processors
    arguments = []
    for name in compiled.positiontup or ():
        value, process = params[name], processors.get(name)
        arguments.append(process(value) if callable(process) else value)
    return arguments


# SQLite: rows read in chunks and written here -----------------------------------------


async def _written_csv(engine: AsyncEngine, where: AuditFilter) -> AsyncGenerator[str, None]:
    lines = _Lines()
    writer = csv.writer(lines, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield lines.drain()
    # Closed with this generator when the reader goes, so its connection goes back at once.
    async with contextlib.aclosing(stream_rows(engine, export_query(where))) as chunks:
        async for rows in chunks:
            writer.writerows(_csv_values(row) for row in rows)
            yield lines.drain()


class _Lines:
    """Where the CSV writer writes: records kept with LF endings, as COPY ends them.

    The writer is told to end records with CRLF because Python 3.11 quotes a value for
    CR and LF only when they are in its line terminator; the CR is then taken off."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line[:-2])

    def drain(self) -> str:
        text = "".join(line + "\n" for line in self.lines)
        self.lines.clear()
        return text


def _csv_values(row: Sequence[Any]) -> Iterable[Any]:
    for name, value in zip(CSV_COLUMNS, row, strict=True):
        if isinstance(value, datetime):
            yield value.isoformat(timespec="microseconds")
        elif name in TEXT_COLUMNS and value is not None:
            yield spreadsheet_safe(value)
        else:
            yield value
