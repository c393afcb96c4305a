"""``signoff audit export | verify | purge`` on SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from signoff.audit import AuditLog, AuditStatus, open_audit
from signoff.audit.query import CSV_COLUMNS
from signoff.audit.schema import audit_events
from tests.audit.test_audit_chain import old_database, old_row
from tests.audit.test_audit_contract import entry
from tests.integration.test_cli import command  # noqa: F401  (a fixture)
from tests.support import SECRET


def with_log(audit_url: str, use: Callable[[AuditLog], Coroutine[Any, Any, Any]]) -> Any:
    async def run() -> Any:
        audit = open_audit(audit_url, SECRET)
        await audit.start()
        try:
            return await use(audit)
        finally:
            await audit.close()

    return asyncio.run(run())


def record(audit_url: str, *entries: Any) -> None:
    async def write(audit: AuditLog) -> None:
        await audit.record(*entries)

    with_log(audit_url, write)


@pytest.fixture
def audit_cmd(audit_url: str, command: Any, monkeypatch: pytest.MonkeyPatch) -> Any:  # noqa: F811
    monkeypatch.setenv("SIGNOFF_SECRET", SECRET)
    monkeypatch.setenv("SIGNOFF_AUDIT", audit_url)
    return lambda *args: command("audit", *args)


def test_verify_passes_then_names_the_row_edited_behind_its_back(
    audit_url: str, audit_cmd: Any
) -> None:
    record(audit_url, *(entry(f"a{i}") for i in range(3)))
    status, out, _ = audit_cmd("verify")
    assert (status, out) == (0, "audit log: 3 rows checked in 1 site(s): intact\n")

    async def edit(audit: AuditLog) -> int:
        target = (await audit.rows())[1]["id"]
        async with audit.engine.begin() as conn:
            await conn.execute(
                update(audit_events)
                .where(audit_events.c.id == target)
                .values(params={"target": "elsewhere"})
            )
        return int(target)

    target = with_log(audit_url, edit)
    status, out, _ = audit_cmd("verify")
    assert status == 1
    assert f"site 'demo': row {target} (seq 2): modified" in out
    assert out.endswith("1 broken\n")


def test_verify_needs_the_secret(audit_url: str, command: Any) -> None:  # noqa: F811
    status, _, err = command("audit", "verify", audit=audit_url)
    assert status == 2 and "SIGNOFF_SECRET" in err


def test_export_writes_filtered_rows_that_csv_reads_back(
    audit_url: str, audit_cmd: Any, tmp_path: Path
) -> None:
    awkward = 'a "quoted", comma\nand a newline'
    record(
        audit_url,
        entry("refund", status=AuditStatus.FAILED, error=awkward, decided_by="teammate:ana"),
        entry("refund", status=AuditStatus.SUCCESS, decided_by="auto"),
        entry("wipe", status=AuditStatus.FAILED, decided_by="user:u1", conversation_id="c2"),
    )
    target = tmp_path / "out.csv"
    status, out, _ = audit_cmd("export", "--status", "failed", "-o", str(target))
    assert (status, out) == (0, "")
    with target.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["action"], r["error"]) for r in rows] == [("refund", awkward), ("wipe", "")]
    assert json.loads(rows[0]["params"]) == {"target": "disk"}
    assert (rows[0]["result"], rows[0]["response"]) == ("", "")  # None is an empty cell
    assert datetime.fromisoformat(rows[0]["ts"]).tzinfo is not None

    status, out, _ = audit_cmd("export", "--decided-by", "teammate", "--action", "refund")
    assert [r["decided_by"] for r in csv.DictReader(out.splitlines())] == ["teammate:ana"]
    status, out, _ = audit_cmd("export", "--conversation", "c2", "--status", "success")
    assert list(csv.DictReader(out.splitlines())) == []


def test_export_refuses_a_bad_time_and_an_unwritable_file(
    audit_cmd: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        audit_cmd("export", "--since", "last tuesday")
    assert "not an ISO 8601 time" in capsys.readouterr().err
    status, _, err = audit_cmd("export", "-o", str(tmp_path / "missing" / "out.csv"))
    assert status == 2 and "--output: cannot write" in err


def test_purge_follows_each_sites_retention(
    audit_url: str, audit_cmd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = datetime.now(UTC) - timedelta(days=100)
    record(
        audit_url,
        entry("old", ts=old),
        entry("old-shop", site="shop", ts=old),
        entry("new"),
    )
    status, out, _ = audit_cmd("purge")
    assert (status, out) == (0, "audit log: no site has a retention set; nothing purged\n")

    config = tmp_path / "signoff.toml"
    config.write_text(
        'audit_retention_days = 30\n[sites.shop]\norigins = ["https://shop.example"]\n'
        "audit_retention_days = 365\n"
    )
    status, out, _ = audit_cmd("purge", "--dry-run", "--config", str(config))
    assert status == 0
    assert "site demo: would purge 1 rows older than 30 days" in out
    assert "site shop: would purge 0 rows older than 365 days" in out
    status, out, _ = audit_cmd("purge", "--config", str(config))
    assert "site demo: purged 1 rows" in out

    async def actions(audit: AuditLog) -> list[str]:
        return [r["action"] for r in await audit.rows()]

    assert with_log(audit_url, actions) == ["old-shop", "new"]
    assert audit_cmd("verify")[0] == 0


def test_verify_checks_rows_chained_before_a_rotated_secret_with_the_old_one(
    audit_url: str, audit_cmd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(audit_url, entry("before"))
    rotated = "rotated-secret-0123456789abcdef"

    async def run() -> None:
        audit = open_audit(audit_url, rotated)  # the server after the rotation
        await audit.start()
        try:
            await audit.record(entry("after"))
        finally:
            await audit.close()

    asyncio.run(run())
    monkeypatch.setenv("SIGNOFF_SECRET", rotated)
    status, out, _ = audit_cmd("verify")
    assert status == 1 and "foreign_key" in out and "(seq 1)" in out
    monkeypatch.setenv("SIGNOFF_PREVIOUS_SECRETS", SECRET)
    assert audit_cmd("verify")[:2] == (0, "audit log: 2 rows checked in 1 site(s): intact\n")


def test_the_audit_commands_do_not_migrate_the_database(audit_cmd: Any) -> None:
    for verb in ("export", "verify", "purge"):
        status, out, err = audit_cmd(verb)
        assert (status, out) == (2, "")
        assert "revision none" in err and "signoff db upgrade" in err


def test_db_upgrade_chains_rows_from_before_the_chain_only_with_the_secret(
    audit_url: str,
    command: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asyncio.run(old_database(audit_url, "0002", old_row("old0"), old_row("old1", site="shop")))
    status, _, err = command("db", "upgrade", audit=audit_url)
    assert status == 2
    assert err.startswith("signoff: SIGNOFF_SECRET: revision 0004 chains the 2 audit rows")
    assert command("db", "current") == (0, "audit database: revision 0002\n", "")
    monkeypatch.setenv("SIGNOFF_SECRET", SECRET)
    assert command("db", "upgrade")[0] == 0
    status, out, _ = command("audit", "verify")
    assert (status, out) == (0, "audit log: 2 rows checked in 2 site(s): intact\n")
