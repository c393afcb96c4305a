"""The SQLite audit log: group commit, failures reported to every waiting writer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from signoff.audit import AuditEntry, AuditStatus, open_audit
from signoff.audit.log import AuditError


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


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://signoff:secret@db.example:5432/audit",
        "postgresql+asyncpg://signoff:secret@db.example:5432/audit",
    ],
)
async def test_postgresql_urls_use_asyncpg(url: str) -> None:
    audit = open_audit(url)  # nothing is connected before start()
    assert audit.engine.url.drivername == "postgresql+asyncpg"
    assert audit.engine.url.database == "audit"
    await audit.close()


async def test_libpqs_sslmode_is_passed_on_as_asyncpgs_ssl() -> None:
    audit = open_audit("postgresql://signoff@db.example/audit?sslmode=require")
    assert dict(audit.engine.url.query) == {"ssl": "require"}
    await audit.close()


@pytest.mark.parametrize(
    "url",
    ["mysql://localhost/audit", "postgresql+psycopg2://localhost/audit", "not a url"],
)
def test_an_unsupported_audit_url_names_the_setting(url: str) -> None:
    with pytest.raises(AuditError, match="SIGNOFF_AUDIT"):
        open_audit(url)
