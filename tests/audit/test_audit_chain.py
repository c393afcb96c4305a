"""The audit log's hash chain and retention, on SQLite and a real PostgreSQL.

Tampering is done the way someone with the database's password would: plain SQL on the
table, behind signoff's back. ``verify`` must name the first row it touched.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update

from signoff.audit import AuditLog, open_audit
from signoff.audit.schema import audit_chains, audit_events
from signoff.audit.upkeep import Verification, purge, verify
from signoff.core.chain import GENESIS, Fault, chain_key, key_id
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


async def test_rows_from_before_the_chain_are_chained_at_start(audit: AuditLog) -> None:
    """A log written before revision 0003 has rows without a place in a chain."""
    await execute(
        audit,
        insert(audit_events).values(
            [
                {
                    "ts": datetime.now(UTC),
                    "site": site,
                    "session_id": "s",
                    "conversation_id": "c",
                    "user_id": "u",
                    "action": f"old{i}",
                    "kind": "write",
                    "status": "success",
                    "params": {"n": i, "amount": 1.0},
                }
                for i, site in enumerate(["demo", "shop", "demo"])
            ]
        ),
    )
    assert not (await check(audit)).intact
    await audit.start()
    await audit.record(entry("new"))
    assert [(r["action"], r["seq"]) for r in await audit.rows(site="demo")] == [
        ("old0", 1),
        ("old2", 2),
        ("new", 3),
    ]
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
