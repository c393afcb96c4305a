"""The audit log's hash chain and retention, on SQLite and a real PostgreSQL.

Tampering is done the way someone with the database's password would: plain SQL on the
table, behind signoff's back. ``verify`` must name the first row it touched.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from signoff.audit import AuditLog, audit_revision, open_audit
from signoff.audit.entries import AuditError
from signoff.audit.migrate import alembic_config, head
from signoff.audit.schema import audit_chains, audit_events
from signoff.audit.upkeep import Verification, purge, verify
from signoff.core.chain import CHAIN_VERSION, GENESIS, Fault, chain_key, key_id, row_hash
from tests.audit.test_audit_contract import entry
from tests.support import SECRET

KEY = chain_key(SECRET)
KEYS = {key_id(KEY): KEY}


async def check(audit: AuditLog) -> Verification:
    return await verify(audit.engine, KEYS)


async def execute(audit: AuditLog, *statements: Any) -> None:
    async with audit.engine.begin() as conn:
        for statement in statements:
            await conn.execute(statement)


async def ids(audit: AuditLog, site: str = "demo") -> list[int]:
    return [r["id"] for r in await audit.rows(site=site)]


async def test_each_sites_rows_form_a_chain_that_verifies(audit: AuditLog) -> None:
    await audit.record(entry("a"), entry("b", site="shop"), entry("c"))
    await audit.record(entry("d", site="shop"))
    rows = await audit.rows()
    assert [(r["site"], r["seq"]) for r in rows] == [
        ("demo", 1),
        ("shop", 1),
        ("demo", 2),
        ("shop", 2),
    ]
    demo = [r for r in rows if r["site"] == "demo"]
    assert demo[0]["prev_hash"] == GENESIS
    assert demo[1]["prev_hash"] == demo[0]["row_hash"]
    assert {r["key_id"] for r in rows} == {key_id(KEY)}
    report = await check(audit)
    assert report.intact and (report.rows, report.sites) == (4, 2)


async def test_writers_on_two_instances_take_turns_on_one_chain(audit_url: str) -> None:
    one, two = open_audit(audit_url, SECRET), open_audit(audit_url, SECRET)
    await one.start()
    await two.start()
    try:
        await asyncio.gather(
            *(
                log.record(entry(f"{n}{i}"))
                for i in range(40)
                for n, log in (("a", one), ("b", two))
            )
        )
        seqs = sorted(r["seq"] for r in await one.rows())
        assert seqs == list(range(1, 81))
        assert (await check(one)).intact
    finally:
        await one.close()
        await two.close()


async def test_writers_beginning_several_chains_at_once_never_deadlock(audit_url: str) -> None:
    # Each commit holds rows of several sites, some of whose chains neither writer has
    # begun yet, so each commit locks chains that exist and then begins the others.
    one, two = open_audit(audit_url, SECRET), open_audit(audit_url, SECRET)
    await one.start()
    await two.start()
    sites = ["s1", "s2", "s3", "s4", "s5"]
    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    log.record(*(entry(f"{n}{i}", site=site) for site in picked))
                    for i in range(12)
                    for n, log, picked in (
                        ("a", one, sites[i % 5 :] + sites[: i % 5]),
                        ("b", two, sites[::-1][i % 3 :]),
                    )
                )
            ),
            timeout=30,
        )
        for site in sites:
            seqs = [r["seq"] for r in await one.rows(site=site)]
            assert sorted(seqs) == list(range(1, len(seqs) + 1))
        assert (await check(one)).intact
    finally:
        await one.close()
        await two.close()


async def test_verify_names_an_edited_row(audit: AuditLog) -> None:
    await audit.record(*(entry(f"a{i}") for i in range(5)))
    target = (await ids(audit))[2]
    await execute(
        audit,
        update(audit_events).where(audit_events.c.id == target).values(params={"target": "nas"}),
    )
    [problem] = (await check(audit)).problems
    assert (problem.fault, problem.row_id, problem.seq) == (Fault.MODIFIED, target, 3)
    assert f"row {target}" in str(problem)


async def test_an_edited_status_or_time_shows_too(audit: AuditLog) -> None:
    await audit.record(*(entry(f"a{i}") for i in range(3)))
    first, second, _ = await ids(audit)
    await execute(
        audit,
        update(audit_events).where(audit_events.c.id == first).values(status="rejected"),
    )
    assert (await check(audit)).problems[0].row_id == first
    await execute(
        audit,
        update(audit_events).where(audit_events.c.id == first).values(status="success"),
        update(audit_events)
        .where(audit_events.c.id == second)
        .values(ts=datetime.now(UTC) - timedelta(days=1)),
    )
    assert (await check(audit)).problems[0].row_id == second


async def test_the_call_in_words_is_covered_too(audit: AuditLog) -> None:
    # What an export shows a reader beside the documents: changing what a decider was
    # shown, or what the visitor was told, breaks the chain like any other edit.
    await audit.record(
        *(entry(f"a{i}", params_text="Target: disk", result_text="Disk wiped") for i in range(3))
    )
    first, second, _ = await ids(audit)
    await execute(
        audit,
        update(audit_events).where(audit_events.c.id == first).values(params_text="Target: nas"),
    )
    assert (await check(audit)).problems[0].row_id == first
    await execute(
        audit,
        update(audit_events).where(audit_events.c.id == first).values(params_text="Target: disk"),
        update(audit_events).where(audit_events.c.id == second).values(result_text=None),
    )
    assert (await check(audit)).problems[0].row_id == second


async def test_verify_names_a_deleted_row(audit: AuditLog) -> None:
    await audit.record(*(entry(f"a{i}") for i in range(5)))
    rows = await ids(audit)
    await execute(audit, delete(audit_events).where(audit_events.c.id == rows[1]))
    [problem] = (await check(audit)).problems
    assert (problem.fault, problem.seq) == (Fault.DELETED, 2)
    assert f"before row {rows[2]}" in problem.detail


async def test_verify_notices_rows_deleted_from_the_end(audit: AuditLog) -> None:
    await audit.record(*(entry(f"a{i}") for i in range(5)))
    rows = await ids(audit)
    await execute(audit, delete(audit_events).where(audit_events.c.id.in_(rows[3:])))
    [problem] = (await check(audit)).problems
    assert (problem.fault, problem.seq) == (Fault.DELETED, 4)
    assert "2 rows (seq 4 to 5) missing at the end" in problem.detail


async def forged(audit: AuditLog, like: int, **changes: Any) -> dict[str, Any]:
    [row] = [r for r in await audit.rows() if r["id"] == like]
    row.pop("id")
    row.update(changes)
    return row


async def test_verify_names_an_inserted_row(audit: AuditLog) -> None:
    await audit.record(*(entry(f"a{i}") for i in range(3)))
    rows = await ids(audit)
    # A plausible row added at the end, its hash made up: no one outside has the key.
    fake = await forged(audit, rows[-1], seq=4, action="refund", row_hash="f" * 64)
    await execute(audit, insert(audit_events).values(fake))
    [problem] = (await check(audit)).problems
    assert problem.fault is Fault.INSERTED and problem.row_id not in rows


async def test_verify_names_a_row_slipped_between_two_others(audit: AuditLog) -> None:
    await audit.record(*(entry(f"a{i}") for i in range(4)))
    rows = await ids(audit)
    # Moving the later rows up to make room, as only someone without the key would.
    await execute(
        audit,
        update(audit_events)
        .where(audit_events.c.id.in_(rows[2:]))
        .values(seq=audit_events.c.seq + 10),
    )
    await execute(
        audit,
        update(audit_events)
        .where(audit_events.c.id.in_(rows[2:]))
        .values(seq=audit_events.c.seq - 9),
    )
    fake = await forged(audit, rows[1], seq=3, row_hash="e" * 64, prev_hash="d" * 64)
    await execute(audit, insert(audit_events).values(fake))
    problem = (await check(audit)).problems[0]
    assert problem.fault is Fault.INSERTED and problem.seq == 3 and problem.row_id not in rows


async def test_a_row_outside_every_chain_is_reported_inserted(audit: AuditLog) -> None:
    await audit.record(entry("a"))
    [row] = await ids(audit)
    fake = await forged(audit, row, seq=None, row_hash=None)
    await execute(audit, insert(audit_events).values(fake))
    [problem] = (await check(audit)).problems
    assert problem.fault is Fault.INSERTED and "in no chain" in problem.detail


async def test_rows_written_under_another_secret_are_named(audit_url: str) -> None:
    secret = "another-secret-0123456789"
    other = open_audit(audit_url, secret)
    await other.start()
    try:
        await other.record(entry("a"))
        [problem] = (await verify(other.engine, KEYS)).problems
        assert problem.fault is Fault.FOREIGN_KEY
        key = chain_key(secret)
        assert (await verify(other.engine, {key_id(key): key})).intact
    finally:
        await other.close()


def old_row(action: str, site: str = "demo", **changes: Any) -> dict[str, Any]:
    """A row as signoff wrote it before revision 0003: no place in a chain."""
    row: dict[str, Any] = {
        "ts": datetime(2024, 5, 1, 12, tzinfo=UTC),
        "site": site,
        "session_id": "s",
        "conversation_id": "c",
        "user_id": "u",
        "action": action,
        "kind": "write",
        "status": "success",
        "params": {"b": 1.0, "a": "é"},
    }
    return {**row, **changes}


async def old_database(audit_url: str, revision: str, *rows: dict[str, Any]) -> None:
    """The database as an older signoff left it: at ``revision``, holding ``rows`` with
    their JSON written as that signoff wrote it (SQLAlchemy's default json.dumps)."""
    url = make_url(audit_url)
    driver = "sqlite+aiosqlite" if url.drivername.startswith("sqlite") else "postgresql+asyncpg"
    engine = create_async_engine(url.set(drivername=driver))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
            for row in rows:
                await conn.execute(insert(audit_events).values(row))
    finally:
        await engine.dispose()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_rows_from_before_the_chain_are_chained_once_by_the_migration(
    audit_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await old_database(
        audit_url, "0002", old_row("old0"), old_row("old1", site="shop"), old_row("old2")
    )
    audit = open_audit(audit_url, SECRET)
    try:
        await audit.start()
        await audit.record(entry("new"))
        assert [
            (r["action"], r["seq"], r["chain_version"]) for r in await audit.rows(site="demo")
        ] == [("old0", 1, 2), ("old2", 2, 2), ("new", 3, CHAIN_VERSION)]
        assert (await check(audit)).intact
        assert errors(caplog) == []
    finally:
        await audit.close()


async def test_the_migration_that_chains_old_rows_needs_the_secret(audit_url: str) -> None:
    await old_database(audit_url, "0002", old_row("old0"), old_row("old1"))
    with pytest.raises(AuditError, match="SIGNOFF_SECRET: revision 0004 chains the 2 audit rows"):
        await audit_revision(audit_url, upgrade=True)
    assert await audit_revision(audit_url) == "0002"  # nothing of the upgrade was kept
    assert await audit_revision(audit_url, upgrade=True, secret=SECRET) == head()


async def test_a_forged_row_in_no_chain_is_never_signed_and_is_named_at_each_start(
    audit_url: str, audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    """Write access to the database without the secret: a refund a teammate never
    approved, dated three days back, with empty chain fields."""
    await audit.record(entry("a"), entry("b"))
    forged = old_row(
        "refund",
        ts=datetime.now(UTC) - timedelta(days=3),
        decided_by="teammate:lena",
        params={"order_id": 1002, "amount": 250_000.0},
    )
    await execute(audit, insert(audit_events).values(forged))
    [forged_id] = [r["id"] for r in await audit.rows(action="refund")]
    for _ in range(2):  # a restart signs nothing
        restarted = open_audit(audit_url, SECRET)
        await restarted.start()
        await restarted.record(entry("later"))
        await restarted.close()
        [problem] = (await check(audit)).problems
        assert (problem.fault, problem.row_id) == (Fault.INSERTED, forged_id)
        assert f"1 row(s) in none: ids {forged_id}" in problem.detail
        assert [r["seq"] for r in await audit.rows(action="refund")] == [None]
    assert (
        errors(caplog)
        == [
            f"audit log: 1 row(s) in no hash chain, not written by signoff (ids {forged_id}); "
            "`signoff audit verify` reports them"
        ]
        * 2
    )


async def test_a_rewritten_tail_stays_outside_the_chain(
    audit_url: str, audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    """The chain fields of the last rows emptied, the rows edited, the chain's end
    rewound to the row before them, the server restarted: they stay in no chain."""
    await audit.record(*(entry(f"a{i}") for i in range(5)))
    rows = await audit.rows()
    tail = [r["id"] for r in rows[3:]]
    await execute(
        audit,
        update(audit_events)
        .where(audit_events.c.id.in_(tail))
        .values(seq=None, prev_hash=None, row_hash=None, key_id=None, status="rejected"),
        update(audit_chains)
        .where(audit_chains.c.site == "demo")
        .values(seq=3, row_hash=rows[2]["row_hash"]),
    )
    restarted = open_audit(audit_url, SECRET)
    await restarted.start()
    await restarted.close()
    [problem] = (await check(audit)).problems
    assert (problem.fault, problem.row_id) == (Fault.INSERTED, tail[0])
    assert f"2 row(s) in none: ids {tail[0]}, {tail[1]}" in problem.detail
    assert f"(ids {tail[0]}, {tail[1]})" in errors(caplog)[0]


async def test_an_upgrade_leaves_a_row_outside_a_begun_chain_where_it_is(
    audit_url: str,
) -> None:
    """At revision 0003 a server had chained its rows (hashes of version 1); a row
    without chain fields put in beside them is not chained by the upgrade."""
    chained = old_row("chained", seq=1, prev_hash=GENESIS, key_id=key_id(KEY))
    chained["row_hash"] = row_hash(KEY, chained)
    await old_database(audit_url, "0003", chained, old_row("forged"))
    audit = open_audit(audit_url, SECRET)
    try:
        await execute(
            audit,
            insert(audit_chains).values(
                site="demo",
                seq=1,
                row_hash=chained["row_hash"],
                purged_seq=0,
                purged_hash=GENESIS,
            ),
        )
        await audit.start()
        assert [(r["action"], r["seq"], r["chain_version"]) for r in await audit.rows()] == [
            ("chained", 1, 1),
            ("forged", None, 1),
        ]
        [problem] = (await check(audit)).problems
        assert problem.fault is Fault.INSERTED and problem.row_id == 2
        await execute(audit, delete(audit_events).where(audit_events.c.seq.is_(None)))
        await audit.record(entry("new"))
        assert (await check(audit)).intact  # version 1 and 2 rows, one chain
    finally:
        await audit.close()


async def test_the_hash_covers_the_id_so_listings_cannot_be_reordered(audit: AuditLog) -> None:
    await audit.record(*(entry(f"a{i}") for i in range(3)))
    first, second, _ = await ids(audit)
    await execute(
        audit,
        update(audit_events).where(audit_events.c.id == first).values(id=-1),
        update(audit_events).where(audit_events.c.id == second).values(id=first),
        update(audit_events).where(audit_events.c.id == -1).values(id=second),
    )
    [problem] = (await check(audit)).problems
    assert problem.fault is Fault.MODIFIED and problem.seq == 1


async def test_a_row_that_reads_one_way_and_hashes_another_is_reported(audit: AuditLog) -> None:
    """The same instant at another offset, a key given twice: SQLite keeps the text, so
    verify names the row; PostgreSQL keeps the value, so there is nothing to read two ways."""
    at = datetime(2026, 5, 1, 12, tzinfo=UTC)
    await audit.record(entry("refund", ts=at, params={"amount": 500.0, "note": "é"}))
    [row] = await audit.rows()
    sqlite = audit.engine.dialect.name == "sqlite"
    where = f"WHERE id = {row['id']}"
    tampering = {
        "ts": f"UPDATE audit_events SET ts = '2026-05-01 14:00:00.000000+02:00' {where}",
        "params": "UPDATE audit_events SET params = "
        f"""'{{"amount": 999999.0, "amount": 500.0, "note": "\u00e9"}}' {where}""",
    }
    for column, statement in tampering.items():
        async with audit.engine.begin() as conn:
            await conn.exec_driver_sql(statement)
            amount = "json_extract(params, '$.amount')" if sqlite else "params->>'amount'"
            read = await conn.exec_driver_sql(
                f"SELECT {amount}, ts < '2026-05-01 13:00:00+00:00' FROM audit_events"
            )
            sql_reads = tuple(read.one())
        report = await check(audit)
        if sqlite:
            [problem] = report.problems
            assert (problem.fault, problem.row_id) == (Fault.NONCANONICAL, row["id"])
            assert f"its {column} is not stored as the one text" in problem.detail
            await execute(audit, update(audit_events).values({column: row[column]}))
        else:
            assert report.intact and sql_reads == ("500.0", True)
    assert (await check(audit)).intact


async def test_purge_drops_a_sites_rows_past_retention_and_the_rest_still_verifies(
    audit: AuditLog,
) -> None:
    now = datetime.now(UTC)
    old, young = now - timedelta(days=40), now - timedelta(days=5)
    await audit.record(*(entry(f"old{i}", ts=old) for i in range(3)))
    await audit.record(entry("old-shop", site="shop", ts=old))
    await audit.record(entry("young", ts=young), entry("now"))
    retention = {"demo": 30, "shop": None}

    counted = await purge(audit.engine, retention.get, now, dry_run=True)
    assert counted == {"demo": 3} and len(await audit.rows()) == 6

    assert await purge(audit.engine, retention.get, now) == {"demo": 3}
    assert [r["action"] for r in await audit.rows()] == ["old-shop", "young", "now"]
    async with audit.engine.connect() as conn:
        anchor = (
            await conn.execute(select(audit_chains).where(audit_chains.c.site == "demo"))
        ).one()
    assert anchor.purged_seq == 3 and anchor.purged_at is not None
    assert (await check(audit)).intact
    await audit.record(entry("later"))
    assert (await check(audit)).intact
    assert await purge(audit.engine, retention.get, now) == {"demo": 0}


async def test_purge_removes_only_a_prefix_so_the_chain_holds(audit: AuditLog) -> None:
    now = datetime.now(UTC)
    # Written out of time order (clocks of two instances): the old row after a young one.
    await audit.record(
        entry("old", ts=now - timedelta(days=50)),
        entry("young", ts=now - timedelta(days=1)),
        entry("late-old", ts=now - timedelta(days=50)),
    )
    assert await purge(audit.engine, {"demo": 30}.get, now) == {"demo": 1}
    assert [r["action"] for r in await audit.rows()] == ["young", "late-old"]
    assert (await check(audit)).intact


async def test_purging_everything_leaves_an_empty_chain_that_goes_on(audit: AuditLog) -> None:
    now = datetime.now(UTC)
    await audit.record(*(entry(f"a{i}", ts=now - timedelta(days=9)) for i in range(4)))
    assert await purge(audit.engine, {"demo": 1}.get, now) == {"demo": 4}
    assert await audit.rows() == []
    assert (await check(audit)).intact
    await audit.record(entry("b"))
    assert [r["seq"] for r in await audit.rows()] == [5]
    assert (await check(audit)).intact


async def test_values_a_backend_reshapes_still_verify(audit: AuditLog) -> None:
    """PostgreSQL's JSONB reads 1e20 and 1.0 back as integers, SQLite keeps text as given."""
    odd = {"big": 1e20, "whole": 1.0, "zero": -0.0, "small": 1.5e-7, "nested": [{"é": "\x00"}]}
    await audit.record(entry("odd", params=odd, result={"n": 2.0**60}, duration_ms=3.0))
    assert (await check(audit)).intact


async def test_verify_is_not_fooled_by_a_server_writing_and_purging_meanwhile(
    audit_url: str, audit: AuditLog
) -> None:
    """verify reads one snapshot: rows committed or purged during its walk are not news of
    tampering (they would be, read against chain ends read a moment earlier)."""
    now = datetime.now(UTC)
    await audit.record(*(entry(f"old{i}", ts=now - timedelta(days=9)) for i in range(200)))
    server = open_audit(audit_url, SECRET)
    await server.start()
    stop = asyncio.Event()
    written = 0

    async def write() -> None:
        nonlocal written
        while not stop.is_set():
            await server.record(entry(f"new{written}"), entry(f"shop{written}", site="shop"))
            written += 1

    async def purge_old() -> None:
        while not stop.is_set():
            await purge(server.engine, {"demo": 1, "shop": None}.get, datetime.now(UTC))
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(write()), asyncio.create_task(purge_old())]
    try:
        reports = [await check(audit) for _ in range(15)]
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await server.close()
    assert [r.problems for r in reports if not r.intact] == []
    assert written > 0
    assert (await check(audit)).intact
