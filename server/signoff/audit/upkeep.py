"""Keeping the audit log: checking its hash chains, purging rows past their retention, and
closing the cards a forgetful store lost.

Both walk one site's chain at a time. Verifying streams the rows, so a log of any size is
checked in constant memory; purging removes the oldest rows of a site in batches, each
batch moving the chain's recorded start so what remains still verifies.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, delete, func, or_, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from signoff.audit.entries import AuditEntry, AuditStatus
from signoff.audit.log import AuditLog, lock_chains, rows_outside_chains, shown
from signoff.audit.query import stream_rows
from signoff.audit.schema import audit_chains, audit_events, sqlite_text
from signoff.core.canonical import canonical_json
from signoff.core.chain import Anchor, ChainCheck, Fault, Problem

audit_log = logging.getLogger("signoff.audit")

PURGE_BATCH = 5000  # rows deleted per transaction: short locks on a busy log


@dataclass
class Verification:
    rows: int = 0
    sites: int = 0
    problems: list[Problem] = field(default_factory=list)  # the first per site

    @property
    def intact(self) -> bool:
        return not self.problems


async def verify(engine: AsyncEngine, keys: Mapping[str, bytes]) -> Verification:
    """Check every site's chain; ``keys`` maps key ids to chain keys (signoff.core.chain).

    Everything is read in one snapshot of the database, so rows written or purged by a
    running server while the check runs are not mistaken for tampering.
    """
    report = Verification()
    async with engine.connect() as conn:
        await _snapshot(conn)
        anchors = [
            Anchor(r.site, r.purged_seq, r.purged_hash, r.seq, r.row_hash)
            for r in await conn.execute(select(audit_chains).order_by(audit_chains.c.site))
        ]
        # Rows outside every chain: no place in one, or a site no chain was begun for.
        # signoff chains every row it writes, so they were put in behind its back.
        count, first = await rows_outside_chains(
            conn,
            or_(
                audit_events.c.seq.is_(None),
                audit_events.c.site.not_in(select(audit_chains.c.site)),
            ),
        )
        if count:
            row = first[0]
            detail = f"it is in no chain ({count} row(s) in none: ids {shown(count, first)})"
            report.problems.append(Problem(row.site, Fault.INSERTED, row.seq, row.id, detail))
        for anchor in anchors:
            report.sites += 1
            check = ChainCheck(keys, anchor)
            problem = await _walk(conn, anchor, check)
            report.rows += check.checked
            if problem is not None:
                report.problems.append(problem)
    return report


async def _snapshot(conn: AsyncConnection) -> None:
    """Make the connection's reads one snapshot until it closes."""
    if conn.dialect.name == "postgresql":
        await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    else:  # SQLite in WAL mode: a read transaction sees the database as it began
        await conn.exec_driver_sql("BEGIN")


async def _walk(conn: AsyncConnection, anchor: Anchor, check: ChainCheck) -> Problem | None:
    """Feed one site's rows to ``check`` in chain order; the first problem, if any."""
    as_text = STORED_AS_TEXT if conn.dialect.name == "sqlite" else ()
    query = (
        select(
            audit_events,
            *(type_coerce(audit_events.c[name], Text).label(_text(name)) for name in as_text),
        )
        .where(audit_events.c.site == anchor.site, audit_events.c.seq.is_not(None))
        .order_by(audit_events.c.seq, audit_events.c.id)
    )
    # Closed at once when a problem ends the walk early, so the cursor goes too.
    async with contextlib.aclosing(stream_rows(conn, query)) as chunks:
        async for rows in chunks:
            for row in rows:
                values = row._mapping
                if (unlike := _not_as_written(values, as_text)) is not None:
                    detail = f"its {unlike} is not stored as the one text signoff writes for it"
                    return Problem(
                        anchor.site, Fault.NONCANONICAL, values["seq"], values["id"], detail
                    )
                if (problem := check.feed(values)) is not None:
                    return problem
    return check.end()


# SQLite stores times and JSON as text, and more than one text reads back as the same
# value: an instant at another offset, a document with a key twice (the hash reads the
# last, SQL's json_extract the first) or other spacing. The hash covers the value read
# back, so each stored text must be the one signoff writes for that value. PostgreSQL's
# timestamptz and jsonb keep values, not texts.
STORED_AS_TEXT = ("ts", "params", "result", "response")


def _text(name: str) -> str:
    return f"{name}_as_stored"


def _not_as_written(row: Mapping[str, Any], names: Iterable[str]) -> str | None:
    """The first of ``names`` whose stored text is not the one written for its value."""
    for name in names:
        stored, value = row[_text(name)], row[name]
        if stored is None:
            continue
        if name == "ts":
            written = sqlite_text(value)
        elif row["chain_version"] >= 2:
            written = canonical_json(value)
        else:  # chained before revision 0004: SQLAlchemy's own json.dumps
            written = json.dumps(value)
        if stored != written:
            return name
    return None


async def purge(
    engine: AsyncEngine,
    retention_days: Callable[[str], int | None],
    now: datetime,
    *,
    dry_run: bool = False,
) -> dict[str, int]:
    """Delete each site's rows older than its retention (``None``: kept forever); the
    count per site. Only a prefix of a chain goes: a row is kept if any row before it
    is young enough, so the rest still links up."""
    async with engine.connect() as conn:
        sites = list((await conn.execute(select(audit_chains.c.site))).scalars())
    purged: dict[str, int] = {}
    for site in sorted(sites):
        days = retention_days(site)
        if days is None:
            continue
        cutoff = now - timedelta(days=days)
        purged[site] = (
            await _count_old(engine, site, cutoff)
            if dry_run
            else await _purge_site(engine, site, cutoff, now)
        )
    return purged


async def _boundary(conn: AsyncConnection, site: str, cutoff: datetime) -> int:
    """The seq below which the site's rows go: its first row young enough to keep, or
    one past its chain's end if none is."""
    c = audit_events.c
    young = await conn.execute(select(func.min(c.seq)).where(c.site == site, c.ts >= cutoff))
    first = young.scalar()
    if first is not None:
        return int(first)
    end = await conn.execute(select(audit_chains.c.seq).where(audit_chains.c.site == site))
    return int(end.scalar_one()) + 1


async def _count_old(engine: AsyncEngine, site: str, cutoff: datetime) -> int:
    async with engine.connect() as conn:
        boundary = await _boundary(conn, site, cutoff)
        found = await conn.execute(
            select(func.count()).where(audit_events.c.site == site, audit_events.c.seq < boundary)
        )
        return int(found.scalar_one())


async def _purge_site(engine: AsyncEngine, site: str, cutoff: datetime, now: datetime) -> int:
    c = audit_events.c
    total = 0
    # Found once: rows below it are old and stay so, and rows written meanwhile come after.
    async with engine.connect() as conn:
        boundary = await _boundary(conn, site, cutoff)
    while True:
        async with engine.begin() as conn:
            await conn.run_sync(lock_chains, {site})
            start = await conn.execute(
                select(audit_chains.c.purged_seq).where(audit_chains.c.site == site)
            )
            last = min(boundary - 1, int(start.scalar_one()) + PURGE_BATCH)
            # The last row that goes: its hash is what the first kept row links to.
            found = (
                await conn.execute(
                    select(c.seq, c.row_hash)
                    .where(c.site == site, c.seq <= last)
                    .order_by(c.seq.desc())
                    .limit(1)
                )
            ).first()
            if found is None:
                return total
            gone = await conn.execute(
                delete(audit_events).where(c.site == site, c.seq <= found.seq)
            )
            await conn.execute(
                update(audit_chains)
                .where(audit_chains.c.site == site)
                .values(purged_seq=found.seq, purged_hash=found.row_hash, purged_at=now)
            )
            total += gone.rowcount


# What a server with a memory store says of the cards it had when it stopped.
FORGOTTEN = (
    "the server restarted and its memory store lost the card: nothing of it ran, unless it "
    "had been confirmed and was running"
)
# Statuses that say a call of a card ended.
_ENDED = [
    s for s in AuditStatus if s not in (AuditStatus.PENDING_CONFIRMATION, AuditStatus.REFUSED)
]


async def close_forgotten_cards(log: AuditLog, now: datetime, limit: int = 10_000) -> int:
    """Close, as ``interrupted``, the cards the log shows still open: run when a server
    starts on a memory store, which holds no card from before. Without it their rows would
    say "pending" forever. Returns how many cards were closed.

    Only rows whose hash checks under this server's secret are copied: a row put in the
    table behind signoff's back would otherwise come out again signed, in a row that
    checks. The others are named in the log and left for ``signoff audit verify``."""
    c = audit_events.c
    ended = select(c.card_id).where(c.card_id.is_not(None), c.status.in_(_ENDED))
    openings = (
        select(audit_events)
        .where(
            c.status == AuditStatus.PENDING_CONFIRMATION,
            c.decided_by.is_(None),  # the rows the card opened with, one per call
            c.card_id.is_not(None),
            c.card_id.not_in(ended),
        )
        .order_by(c.id)
        .limit(limit)
    )
    async with log.engine.connect() as conn:
        found = (await conn.execute(openings)).mappings().all()
    rows = [row for row in found if log.signed(dict(row))]
    if len(rows) < len(found):
        unsigned = sorted({row["id"] for row in found} - {row["id"] for row in rows})
        shown_ids = ", ".join(map(str, unsigned[:10])) + (" ..." if len(unsigned) > 10 else "")
        audit_log.warning(
            "left %d open cards' rows as they are: their hashes do not check under this "
            "server's secret (rows %s); signoff audit verify names what is wrong",
            len(unsigned),
            shown_ids,
        )
    await log.record(
        *(
            AuditEntry(
                ts=now,
                site=row["site"],
                session_id=row["session_id"],
                conversation_id=row["conversation_id"],
                user_id=row["user_id"],
                action=row["action"],
                kind=row["kind"],
                status=AuditStatus.INTERRUPTED,
                params=row["params"],  # as recorded: redacted already
                params_text=row["params_text"],
                card_id=row["card_id"],
                error=FORGOTTEN,
            )
            for row in rows
        )
    )
    return len({row["card_id"] for row in rows})
