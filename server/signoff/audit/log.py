"""Writing and reading audit rows.

Params and results are redacted by the engine before they get here; this
module only stores what it is given, but for the few values a database
cannot keep (see ``_storable``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

from alembic.util import CommandError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    bindparam,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from signoff import metrics
from signoff.audit import migrate
from signoff.audit.entries import AuditEntry, AuditError
from signoff.audit.exports import Exports
from signoff.audit.schema import audit_chains, audit_events
from signoff.audit.sqlite_writer import SqliteWriter
from signoff.core.canonical import canonical_json
from signoff.core.chain import GENESIS, chain_key, checks, key_id, link
from signoff.extras import missing_extra

log = logging.getLogger("signoff.audit")

SHOWN_IDS = 20  # rows named in a report of rows outside every chain
PING_TIMEOUT = 2.0  # seconds a health check waits for the audit database
OutsideRow = Row[int, str, int | None]  # a row outside every chain: its id, site and seq


class AuditLog:
    """Writes rows by group commit: callers wait for their rows to be committed, and all
    rows that arrive while one transaction commits share the next one.

    Each row is linked into its site's hash chain as it is written (signoff.core.chain);
    that needs the server's secret. Opened without one, the log reads but cannot write.
    CSV exports read through ``exports``, a pool of their own.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        secret: str | None,
        exports: Exports,
        sqlite_writer: SqliteWriter | None = None,
    ) -> None:
        self.engine = engine
        self.exports = exports
        # On SQLite, rows are written through a synchronous engine, on the loop's thread
        # when the file's write lock is free (see sqlite_writer); reads go through
        # ``engine`` as on PostgreSQL.
        self._sqlite_writer = sqlite_writer
        self.key = chain_key(secret) if secret else None
        self._queue: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """At server start-up: the schema is brought to the newest revision, and rows in
        no chain are named in the server's log. They are never chained from here: every
        row is chained as it is written (and rows from before the chain by the migration
        that chains them), so such a row was put in behind signoff's back, and signing it
        would make it verify."""
        await self.upgrade()
        async with self.engine.connect() as conn:
            count, first = await rows_outside_chains(conn, audit_events.c.seq.is_(None))
        if count:
            log.error(
                "audit log: %d row(s) in no hash chain, not written by signoff (ids %s); "
                "`signoff audit verify` reports them",
                count,
                shown(count, first),
            )

    async def upgrade(self) -> None:
        """Bring the schema to the newest revision; several instances may do it at once.
        A migration that signs rows uses this log's secret (see migrate.upgrade)."""
        with self._database_errors():
            await migrate.upgrade(self.engine, self.key)

    async def revision(self) -> str | None:
        """The schema revision the database is at; ``None`` if it has none yet."""
        with self._database_errors():
            return await migrate.revision(self.engine)

    @contextmanager
    def _database_errors(self) -> Iterator[None]:
        try:
            yield
        except (OSError, SQLAlchemyError, CommandError) as exc:
            url = self.engine.url.render_as_string(hide_password=True)
            reason = exc.orig if isinstance(exc, DBAPIError) else exc
            raise AuditError(
                f"SIGNOFF_AUDIT: cannot open or migrate the audit database {url}: "
                f"{str(reason) or type(reason).__name__}"
            ) from exc

    async def close(self) -> None:
        """Commit what is queued, wait for the commit under way, then let go of the database."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
            self._writer = None
        await self.engine.dispose()
        await self.exports.engine.dispose()
        if self._sqlite_writer is not None:
            await self._sqlite_writer.close()

    async def ping(self) -> None:
        """Raise AuditError unless the database answers a query within PING_TIMEOUT."""
        try:
            async with asyncio.timeout(PING_TIMEOUT), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except TimeoutError:
            raise AuditError(
                f"the audit database did not answer within {PING_TIMEOUT:g} s"
            ) from None
        except (OSError, SQLAlchemyError) as exc:
            reason = exc.orig if isinstance(exc, DBAPIError) else exc
            raise AuditError(f"the audit database is unavailable: {reason}") from None

    async def record(self, *entries: AuditEntry) -> None:
        """Write the rows; returns once they are committed."""
        if not entries:
            return
        if self.key is None:
            raise AuditError("this audit log was opened without the server's secret")
        rows = [_row(e) for e in entries]
        done = asyncio.get_running_loop().create_future()
        self._queue.append((rows, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        self._wake.set()
        await done

    async def _write(self) -> None:
        while self._queue or not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self._commit_queued()

    async def _commit_queued(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        rows = [r for rows, _ in batch for r in rows]
        try:
            if self._sqlite_writer is not None:
                key = self._chain_key()
                await self._sqlite_writer.run(lambda conn: append_rows(conn, key, rows), len(rows))
            else:
                async with self.engine.begin() as conn:
                    await conn.run_sync(append_rows, self._chain_key(), rows)
        except Exception as exc:
            metrics.audit_write_failures.inc(len(rows))
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    def signed(self, row: Mapping[str, Any]) -> bool:
        """Whether a row read back was chained by this server's secret as it stands."""
        if self.key is None or row.get("key_id") != key_id(self.key):
            return False
        return checks(self.key, row)

    def _chain_key(self) -> bytes:
        assert self.key is not None
        return self.key

    async def rows(self, **filters: Any) -> list[dict[str, Any]]:
        """Rows matching equality filters (column=value), oldest first."""
        query = select(audit_events).order_by(audit_events.c.id)
        for name, value in filters.items():
            query = query.where(audit_events.c[name] == value)
        async with self.engine.connect() as conn:
            result = await conn.execute(query)
            return [dict(row._mapping) for row in result]


def append_rows(conn: Connection, key: bytes, rows: list[dict[str, Any]]) -> None:
    """Insert the rows, each given its id and its place in its site's chain, in the
    transaction ``conn`` is in. The chain ends stay locked until that ends, so writers on
    other instances take turns."""
    ends = lock_chains(conn, {row["site"] for row in rows})
    for row, row_id in zip(rows, new_ids(conn, len(rows)), strict=True):
        row["id"] = row_id  # before the hash, which covers it
    link(key, rows, ends)
    conn.execute(
        _MOVE_CHAIN_END,
        [{"end_site": s, "end_seq": seq, "end_hash": last} for s, (seq, last) in ends.items()],
    )
    conn.execute(_INSERT_ROWS, rows)


# Built once: a commit runs these every time, and building and caching a statement cost
# SQLAlchemy more than SQLite's own work on a one-row commit.
_CHAIN_ENDS = (
    select(audit_chains.c.site, audit_chains.c.seq, audit_chains.c.row_hash)
    .where(audit_chains.c.site.in_(bindparam("sites", expanding=True)))
    .order_by(audit_chains.c.site)
    .with_for_update()
)
_MOVE_CHAIN_END = (
    update(audit_chains)
    .where(audit_chains.c.site == bindparam("end_site"))
    .values(seq=bindparam("end_seq"), row_hash=bindparam("end_hash"))
)
_INSERT_ROWS = insert(audit_events)
_LAST_ID = select(func.max(audit_events.c.id))


def lock_chains(conn: Connection, sites: set[str]) -> dict[str, tuple[int, str]]:
    """Each site's chain end (last seq, last hash), locked for this transaction, which
    this begins; a site's chain is begun if it has none. Sites are locked in one order,
    so writers never deadlock. (Async code runs it with ``AsyncConnection.run_sync``.)"""
    if conn.dialect.name == "sqlite":
        # The file's write lock, taken now rather than at the first write: two writers
        # must not both read the same chain end.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    ends = _locked_ends(conn, sites)
    if missing := sites - ends.keys():
        new = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(audit_chains)
        conn.execute(
            new.on_conflict_do_nothing(),
            [
                {"site": s, "seq": 0, "row_hash": GENESIS, "purged_seq": 0, "purged_hash": GENESIS}
                for s in sorted(missing)
            ],
        )
        # Read again, all in one order: the new chains are locked now, and a chain another
        # writer began meanwhile may have moved already.
        ends = _locked_ends(conn, sites)
    return ends


def _locked_ends(conn: Connection, sites: set[str]) -> dict[str, tuple[int, str]]:
    found = conn.execute(_CHAIN_ENDS, {"sites": sorted(sites)})
    return {site: (seq, last) for site, seq, last in found}


def new_ids(conn: Connection, count: int) -> list[int]:
    """Ids for ``count`` new rows, in increasing order, taken inside the transaction that
    holds the chain lock, so a site's rows are numbered in their chain's order."""
    if conn.dialect.name == "postgresql":
        found = conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('audit_events', 'id')) "
                "FROM generate_series(1, :count)"
            ),
            {"count": count},
        )
        return sorted(found.scalars())
    # SQLite: this transaction holds the file's write lock (lock_chains), so no other
    # writer can take these.
    last = conn.execute(_LAST_ID).scalar() or 0
    return list(range(last + 1, last + 1 + count))


async def rows_outside_chains(
    conn: AsyncConnection, where: ColumnElement[bool]
) -> tuple[int, Sequence[OutsideRow]]:
    """How many rows match ``where`` (rows in no chain), and the first few of them (their
    id, site and seq)."""
    count = (await conn.execute(select(func.count()).where(where))).scalar_one()
    c = audit_events.c
    first = await conn.execute(
        select(c.id, c.site, c.seq).where(where).order_by(c.id).limit(SHOWN_IDS)
    )
    return int(count), first.all()


def shown(count: int, rows: Sequence[OutsideRow]) -> str:
    """Rows' ids as a report lists them: the first few, and how many more."""
    listed = ", ".join(str(row.id) for row in rows)
    return listed if count <= len(rows) else f"{listed} and {count - len(rows)} more"


def open_audit(url: str, secret: str | None = None, exports: int = 1) -> AuditLog:
    """The audit log for a ``SIGNOFF_AUDIT`` URL: ``sqlite:///path`` or
    ``postgresql://user@host:port/db`` (``postgresql+asyncpg://`` too). Only a log opened
    with the server's ``secret`` can write rows, as only it can chain them. At most
    ``exports`` CSV downloads run at once, on a pool of their own (signoff.audit.exports):
    the server's setting; a command that exports reads through ``engine`` instead."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise AuditError(f"SIGNOFF_AUDIT: not a database URL: {url!r}") from exc
    if parsed.drivername in {"sqlite", "sqlite+aiosqlite"}:
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in {"postgresql", "postgresql+asyncpg"}:
        if needed := missing_extra("postgres", "SIGNOFF_AUDIT=postgresql://…"):
            raise AuditError(needed)
        if "sslmode" in parsed.query:  # libpq's name, as hosting providers hand out URLs
            parsed = parsed.difference_update_query(["sslmode"]).update_query_dict(
                {"ssl": parsed.query["sslmode"]}
            )
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        named = parsed.render_as_string(hide_password=True)
        raise AuditError(
            f"SIGNOFF_AUDIT: unsupported database {named!r}; "
            "use sqlite:///path or postgresql://user@host:port/db"
        )
    exporting = _engine(parsed, pool_size=exports, max_overflow=0)
    writer = None
    if parsed.drivername == "sqlite+aiosqlite" and parsed.database not in {None, "", ":memory:"}:
        writer = SqliteWriter(parsed, _sqlite_pragmas)
    return AuditLog(_engine(parsed), secret, Exports(exporting, exports), writer)


def _engine(url: URL, **pool: Any) -> AsyncEngine:
    # Documents are written as one text per value (sorted keys, no spaces): SQLite keeps
    # that text, and verify checks it is the text the hash was made from.
    if url.drivername == "sqlite+aiosqlite":
        engine = create_async_engine(url, json_serializer=canonical_json, **pool)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # A connection the server restarted under is found out before a commit uses it.
    return create_async_engine(url, json_serializer=canonical_json, pool_pre_ping=True, **pool)


async def audit_revision(
    url: str, *, upgrade: bool = False, secret: str | None = None
) -> str | None:
    """The schema revision of the audit database at ``url``, brought to the newest first
    if ``upgrade``: ``signoff db``, and ``signoff serve`` before it opens its port. The
    server's ``secret``, if given, lets a migration sign rows."""
    audit = open_audit(url, secret)
    try:
        if upgrade:
            await audit.upgrade()
        return await audit.revision()
    finally:
        await audit.close()


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # WAL: readers never block the writer; NORMAL: a commit waits for the log, not for
    # every page to reach the disk; still durable across a crash of the process.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:
        # Another connection is turning a new file to WAL at this moment and this one
        # must back off; WAL belongs to the file, so this connection uses it all the same.
        if "locked" not in str(exc):
            raise
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# PostgreSQL refuses NUL characters and lone surrogates in text and JSON, and NaN and the
# infinities in JSON; one such value would fail the whole group commit it is in. They are
# replaced on every backend, so every backend keeps the same rows.
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")
_DOCUMENTS = {"params", "result", "response"}


def _row(entry: AuditEntry) -> dict[str, Any]:
    if entry.ts.tzinfo is None:  # refused here, so it fails only its own caller
        raise ValueError("audit timestamps must be timezone-aware")
    values = {f.name: getattr(entry, f.name) for f in fields(entry)}
    return {
        name: _storable(value) if name in _DOCUMENTS or isinstance(value, str) else value
        for name, value in values.items()
    }


def _storable(value: Any) -> Any:
    """``value`` with NUL characters and lone surrogates replaced by U+FFFD, NaN and the
    infinities by their names as strings; copied, so later changes to it are not logged."""
    if isinstance(value, str):
        return _UNSTORABLE_CHARS.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        # Keys as JSON writes them ("1", "true"), so they sort as the text they become.
        return {
            _storable(k if isinstance(k, str) else json.dumps(k)): _storable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value
