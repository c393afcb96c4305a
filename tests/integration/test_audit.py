"""The SQLite audit log: group commit, failures reported to every waiting writer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from signoff.audit import AuditEntry, AuditStatus, open_audit


def entry(action: str) -> AuditEntry:
    return AuditEntry(
        ts=datetime.now(UTC),
        site="demo",
        session_id="s1",
        conversation_id="conv1",
        user_id="u1",
        action=action,
        kind="write",
        status=AuditStatus.SUCCESS,
        params={"n": 1},
    )


async def test_concurrent_writers_each_return_once_their_row_is_committed(tmp_path: Path) -> None:
    audit = open_audit(f"sqlite:///{tmp_path}/audit.db")
    await audit.start()
    await asyncio.gather(*(audit.record(entry(f"a{i}")) for i in range(200)))
    rows = await audit.rows()
    assert sorted(r["action"] for r in rows) == sorted(f"a{i}" for i in range(200))
    await audit.close()


async def test_a_failed_commit_is_raised_to_every_writer_in_it(tmp_path: Path) -> None:
    audit = open_audit(f"sqlite:///{tmp_path}/audit.db")
    await audit.start()
    async with audit.engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE audit_events")
    results = await asyncio.gather(
        *(audit.record(entry(f"a{i}")) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, OperationalError) for r in results)
    await audit.close()


async def test_the_audit_file_is_in_wal_mode(tmp_path: Path) -> None:
    audit = open_audit(f"sqlite:///{tmp_path}/audit.db")
    await audit.start()
    async with audit.engine.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
    assert mode == "wal"
    await audit.close()


def test_an_unsupported_audit_url_names_the_setting() -> None:
    from signoff.audit.log import AuditError

    with pytest.raises(AuditError, match="SIGNOFF_AUDIT"):
        open_audit("mysql://localhost/audit")
