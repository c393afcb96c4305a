"""What every audit backend must do, run against SQLite and a real PostgreSQL.

The engine writes every call through ``AuditLog.record`` and the API reads them back
through ``rows``; a backend that differs from another here would make the audit log
depend on where it is kept.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError

from signoff import metrics
from signoff.audit import AuditEntry, AuditLog, AuditStatus, open_audit
from signoff.audit.migrate import alembic_config, head
from signoff.audit.schema import metadata
from tests.support import SECRET

IST = timezone(timedelta(hours=5, minutes=30))


def entry(action: str = "wipe", **changes: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "ts": datetime.now(UTC),
        "site": "demo",
        "session_id": "s1",
        "conversation_id": "conv1",
        "user_id": "u1",
        "action": action,
        "kind": "destructive",
        "status": AuditStatus.SUCCESS,
        "params": {"target": "disk"},
    }
    values.update(changes)
    return AuditEntry(**values)


async def rename_table(audit: AuditLog, old: str, new: str) -> None:
    async with audit.engine.begin() as conn:
        await conn.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")


def writing_engines(audit: AuditLog) -> tuple[Engine, ...]:
    """Where rows are written: on SQLite synchronous engines of their own."""
    if audit._sqlite_writer is not None:
        return audit._sqlite_writer.engines
    return (audit.engine.sync_engine,)


async def test_concurrent_writers_share_commits_and_all_rows_land_in_order(
    audit: AuditLog,
) -> None:
    commits = 0

    def count(conn: Any) -> None:
        nonlocal commits
        commits += 1

    for engine in writing_engines(audit):
        event.listen(engine, "commit", count)
    await asyncio.gather(
        *(audit.record(entry(f"a{i}"), entry(f"b{i}")) for i in range(150)),
    )
    rows = await audit.rows()
    assert sorted(r["action"] for r in rows) == sorted(
        [f"a{i}" for i in range(150)] + [f"b{i}" for i in range(150)]
    )
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == 300
    # One caller's rows are written together, in the order given.
    for a, b in itertools.pairwise(rows):
        if a["action"].startswith("a"):
            assert b["action"] == "b" + a["action"][1:]
    # Callers that arrived together shared a transaction.
    assert 0 < commits < 150 / 2


async def test_rows_filter_by_equal_columns_oldest_first(audit: AuditLog) -> None:
    await audit.record(
        entry("refund", status=AuditStatus.FAILED, error="card declined"),
        entry("refund", conversation_id="conv2"),
        entry("wipe", status=AuditStatus.CANCELLED, card_id="card1", decided_by="user:u1"),
        entry("refund", status=AuditStatus.FAILED, conversation_id="conv2"),
    )
    assert [r["action"] for r in await audit.rows()] == ["refund", "refund", "wipe", "refund"]
    failed = await audit.rows(status="failed")
    assert [(r["conversation_id"], r["error"]) for r in failed] == [
        ("conv1", "card declined"),
        ("conv2", None),
    ]
    both = await audit.rows(action="refund", conversation_id="conv2")
    assert [r["status"] for r in both] == ["success", "failed"]
    [cancelled] = await audit.rows(card_id="card1")
    assert (cancelled["status"], cancelled["decided_by"]) == ("cancelled", "user:u1")
    assert await audit.rows(action="nothing") == []


async def test_json_comes_back_as_it_was_stored(audit: AuditLog) -> None:
    params = {
        "text": "Grüße, 東京, مرحبا, 🧾",
        "nested": {"list": [1, [2, {"deep": [None, True, False]}]], "empty": {}, "none": []},
        "big": 2**70,
        "negative": -(2**63),
        "float": 0.1,
        "zero": 0,
        "keys with spaces and ünïcode": "ok",
    }
    result = [{"id": 1001, "total": 12.5}, "done", None]
    await audit.record(entry(params=params, result=result), entry(result="plain text"))
    first, second = await audit.rows()
    assert first["params"] == params
    assert first["result"] == result
    assert type(first["params"]["big"]) is int
    assert type(first["params"]["float"]) is float
    assert second["result"] == "plain text"


async def test_a_float_written_with_an_exponent_keeps_its_value(audit: AuditLog) -> None:
    # JSONB keeps numbers as decimals and prints 1e300 in full, without a point, so it
    # may come back as an int; the value is the same.
    await audit.record(entry(params={"huge": 1e300, "tiny": 1e-300, "amount": 1e16}))
    [row] = await audit.rows()
    assert {k: float(v) for k, v in row["params"].items()} == {
        "huge": 1e300,
        "tiny": 1e-300,
        "amount": 1e16,
    }


async def test_timestamps_come_back_aware_in_utc_to_the_microsecond(audit: AuditLog) -> None:
    at = datetime(2024, 3, 31, 1, 30, 15, 123456, tzinfo=IST)
    await audit.record(entry(ts=at))
    [row] = await audit.rows()
    assert row["ts"] == at
    assert row["ts"].utcoffset() == timedelta(0)
    assert row["ts"] == datetime(2024, 3, 30, 20, 0, 15, 123456, tzinfo=UTC)


async def test_a_naive_timestamp_is_refused_to_its_caller_alone(audit: AuditLog) -> None:
    results = await asyncio.gather(
        audit.record(entry("naive", ts=datetime(2024, 1, 1))),
        audit.record(entry("aware")),
        return_exceptions=True,
    )
    assert isinstance(results[0], ValueError) and results[1] is None
    assert [r["action"] for r in await audit.rows()] == ["aware"]


async def test_values_postgresql_refuses_are_stored_alike_on_every_backend(
    audit: AuditLog,
) -> None:
    # Any of these would fail a PostgreSQL insert, and with it the other callers' rows
    # in the same group commit.
    action = "x" * 500 + "\x00"  # a bot may propose any name at all
    await asyncio.gather(
        audit.record(
            entry(
                action,
                user_id="u" * 300,
                params={"nul\x00key": "a\x00b", "lone": "\ud800", "values": [float("nan")]},
                result={"inf": float("inf"), "-inf": float("-inf")},
                error="failed on \x00",
                decided_by="teammate:" + "t" * 400,
            )
        ),
        audit.record(entry("innocent")),
    )
    row, innocent = await audit.rows()
    assert row["action"] == "x" * 500 + "\ufffd"
    assert row["params"] == {"nul\ufffdkey": "a\ufffdb", "lone": "\ufffd", "values": ["nan"]}
    assert row["result"] == {"inf": "inf", "-inf": "-inf"}
    assert row["error"] == "failed on \ufffd"
    assert (len(row["user_id"]), len(row["decided_by"])) == (300, 409)
    assert innocent["action"] == "innocent"


async def test_recorded_params_are_a_copy(audit: AuditLog) -> None:
    params: dict[str, Any] = {"items": [1]}
    pending = asyncio.ensure_future(audit.record(entry(params=params)))
    await asyncio.sleep(0)  # recorded, not yet committed
    params["items"].append(2)
    await pending
    [row] = await audit.rows()
    assert row["params"] == {"items": [1]}


async def test_a_failed_commit_reaches_its_callers_and_later_rows_are_kept(
    audit: AuditLog,
) -> None:
    await audit.record(entry("before"))
    await rename_table(audit, "audit_events", "audit_events_away")
    failures = metrics.audit_write_failures._value.get()
    failed = await asyncio.gather(
        *(audit.record(entry(f"lost{i}")) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, DBAPIError) for r in failed), failed
    assert metrics.audit_write_failures._value.get() == failures + 5  # counted in /metrics
    await rename_table(audit, "audit_events_away", "audit_events")
    await asyncio.gather(*(audit.record(entry(f"later{i}")) for i in range(5)))
    actions = [r["action"] for r in await audit.rows()]
    assert actions[0] == "before"
    assert sorted(actions[1:]) == [f"later{i}" for i in range(5)]


async def test_closing_waits_for_every_queued_row(audit_url: str) -> None:
    audit = open_audit(audit_url, SECRET)
    await audit.start()
    committing, loop = asyncio.Event(), asyncio.get_running_loop()
    for engine in writing_engines(audit):
        event.listen(engine, "begin", lambda conn: loop.call_soon_threadsafe(committing.set))
    first = [asyncio.ensure_future(audit.record(entry(f"a{i}"))) for i in range(20)]
    await committing.wait()  # the writer is in the middle of the first batch
    second = [asyncio.ensure_future(audit.record(entry(f"b{i}"))) for i in range(20)]
    await audit.close()
    assert all(task.done() and task.exception() is None for task in first + second)
    reopened = open_audit(audit_url, SECRET)
    try:
        assert len(await reopened.rows()) == 40
    finally:
        await reopened.close()


async def test_two_logs_on_one_database_write_side_by_side(audit_url: str) -> None:
    """Two server instances, one audit database."""
    one, two = open_audit(audit_url, SECRET), open_audit(audit_url, SECRET)
    await asyncio.gather(one.start(), two.start())
    try:
        await asyncio.gather(
            *(
                log.record(entry(f"{n}{i}"))
                for i in range(50)
                for n, log in [("one", one), ("two", two)]
            )
        )
        assert len(await one.rows()) == len(await two.rows()) == 100
    finally:
        await one.close()
        await two.close()


async def test_upgrading_an_empty_database_to_the_newest_schema_twice_is_fine(
    audit_url: str,
) -> None:
    audit = open_audit(audit_url, SECRET)
    try:
        assert await audit.revision() is None
        await audit.upgrade()
        assert await audit.revision() == head()
        await audit.record(entry("kept"))
        await audit.upgrade()
        assert await audit.revision() == head()
        assert [r["action"] for r in await audit.rows()] == ["kept"]
    finally:
        await audit.close()


async def test_the_migrated_database_matches_the_schema_queries_use(audit: AuditLog) -> None:
    async with audit.engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert differences == []


async def test_instances_starting_at_once_all_upgrade_the_same_database(audit_url: str) -> None:
    logs = [open_audit(audit_url, SECRET) for _ in range(4)]
    try:
        await asyncio.gather(*(log.start() for log in logs))
        assert {await log.revision() for log in logs} == {head()}
        await logs[0].record(entry("after"))
        assert len(await logs[3].rows()) == 1
    finally:
        for log in logs:
            await log.close()


async def test_migrations_only_go_forward_and_a_refused_downgrade_keeps_everything(
    audit: AuditLog,
) -> None:
    await audit.record(entry("kept"))
    async with audit.engine.connect() as conn:
        with pytest.raises(RuntimeError, match="only go forward"):
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "base"))
    assert await audit.revision() == head()
    assert [r["action"] for r in await audit.rows()] == ["kept"]
