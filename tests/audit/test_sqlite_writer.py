"""On SQLite a group commit runs on the event loop's thread while the file's write lock is
free; a taken lock, and the log's checkpoints, are waited for in a worker thread, so the
loop never waits on another process or on the disk."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event

from signoff.audit import AuditLog, open_audit
from signoff.audit.sqlite_writer import SqliteWriter
from tests.audit.test_audit_contract import entry
from tests.support import SECRET


@pytest.fixture
async def audit(tmp_path: Path) -> AsyncIterator[AuditLog]:
    audit = open_audit(f"sqlite:///{tmp_path / 'audit.db'}", SECRET)
    await audit.start()
    try:
        yield audit
    finally:
        await audit.close()


def writer(audit: AuditLog) -> SqliteWriter:
    assert audit._sqlite_writer is not None
    return audit._sqlite_writer


async def test_a_commit_with_the_lock_free_runs_on_the_loops_thread(audit: AuditLog) -> None:
    threads: list[int] = []
    for engine in writer(audit).engines:
        event.listen(engine, "commit", lambda conn: threads.append(threading.get_ident()))
    await asyncio.gather(*(audit.record(entry(f"a{i}")) for i in range(5)))
    await audit.record(entry("b"))
    assert threads and set(threads) == {threading.get_ident()}
    assert writer(audit).waited == 0
    assert len(await audit.rows()) == 6


async def test_a_lock_held_elsewhere_is_waited_for_off_the_loop(
    audit: AuditLog, tmp_path: Path
) -> None:
    """Another process writing the file (the CLI pruning, say) holds its write lock: the
    commit waits for it in a thread while the server goes on, then lands."""
    other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        recording = asyncio.ensure_future(audit.record(entry("waited")))
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert not recording.done()
        assert ticks == 20
    finally:
        other.execute("ROLLBACK")
        other.close()
    await recording
    assert [r["action"] for r in await audit.rows()] == ["waited"]
    assert writer(audit).waited == 1
    # The next commit finds the lock free again and runs at once.
    await audit.record(entry("after"))
    assert writer(audit).waited == 1


async def test_the_log_is_checkpointed_in_a_thread_and_stays_bounded(
    audit: AuditLog, tmp_path: Path
) -> None:
    now, _ = writer(audit).engines
    with now.connect() as conn:  # the loop's connection never checkpoints by itself
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    wal = tmp_path / "audit.db-wal"

    async def write(rows: int) -> None:
        for i in range(rows):
            await audit.record(entry(f"r{i}", params={"text": "x" * 2_000}))

    writer(audit).checkpoint_rows = 10**9
    await write(200)
    unchecked = wal.stat().st_size
    assert writer(audit).checkpoints == 0
    writer(audit).checkpoint_rows = 20
    await write(400)
    assert writer(audit).checkpoints >= 10
    # Checkpointed every 20 rows, the log is written over from its start again and again:
    # 400 rows more leave it about as long as 200 left it (it would be three times that).
    assert wal.stat().st_size < unchecked * 1.5
    assert len(await audit.rows()) == 600
