"""The audit export benchmark, run tiny against the test PostgreSQL: its report must hold
counts that add up and two exports of the same rows, not speeds."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from benchmarks import audit_export
from benchmarks.audit_export import Report, Settings, parse, run_export, summary, table
from benchmarks.run import parse as parse_run
from signoff.audit.query import CSV_COLUMNS
from tests.services import POSTGRES_ADMIN_URL

ROWS = 3_000
TINY = Settings(rows=ROWS, postgres=POSTGRES_ADMIN_URL, settle=0.1, check=True, quiet=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return run_export(TINY, tmp_path_factory.mktemp("export"))


def test_both_exports_carry_every_row_under_the_header(report: Report) -> None:
    assert report.unavailable is None and report.complete
    assert [e.label for e in report.exports] == [
        "signoff GET /api/v1/audit?format=csv",
        "PostgreSQL COPY ... TO STDOUT (floor)",
    ]
    for export in report.exports:
        assert export.records == ROWS
        assert export.header == ",".join(CSV_COLUMNS)
        assert export.parsed is not None
        header, *records = export.parsed
        assert tuple(header) == CSV_COLUMNS
        assert len(records) == ROWS
        assert all(len(r) == len(CSV_COLUMNS) for r in records)
        assert export.bytes > ROWS * 400  # realistic rows: params, user agents, hashes
        assert export.seconds > 0 and export.rows_per_second > 0


def test_signoff_and_copy_export_the_same_rows(report: Report) -> None:
    signoff, copy = (e.parsed for e in report.exports)
    assert signoff is not None and copy is not None
    for theirs, ours in zip(copy[1:], signoff[1:], strict=True):
        row, mine = (
            dict(zip(CSV_COLUMNS, theirs, strict=True)),
            dict(zip(CSV_COLUMNS, ours, strict=True)),
        )
        for column in CSV_COLUMNS:
            if column == "ts":  # COPY writes PostgreSQL's own text: "2026-01-01 00:00:02.5+00"
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", mine[column])
                assert datetime.fromisoformat(mine[column]) == datetime.fromisoformat(row[column])
            elif column == "duration_ms":
                assert float(mine[column]) == float(row[column])
            elif column in {"params", "result", "response"}:
                assert json.loads(mine[column] or "null") == json.loads(row[column] or "null")
            else:
                assert mine[column] == row[column], column
    assert len({r[CSV_COLUMNS.index("status")] for r in signoff[1:]}) > 5
    assert len({r[CSV_COLUMNS.index("conversation_id")] for r in signoff[1:]}) == ROWS // 4


def test_memory_and_cpu_are_read(report: Report) -> None:
    signoff, copy = report.exports
    for export in report.exports:
        assert 0 < export.rss_before <= export.rss_peak
        assert export.rss_after > 0 and export.anon_peak >= export.anon_before > 0
        assert export.database_cpu >= 0 and export.client_cpu > 0
    assert signoff.server_cpu is not None and signoff.server_cpu > 0
    assert copy.server_cpu is None


def test_the_table_sets_them_side_by_side(report: Report) -> None:
    text = table(report)
    for export in report.exports:
        assert export.label in text
        assert f"{export.records:,}" in text
    assert "every export has every row" in summary(report)


def test_the_scratch_database_is_gone(report: Report) -> None:
    async def leftover() -> list[str]:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            rows = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'signoff_bench_%'"
            )
        finally:
            await conn.close()
        return [r["datname"] for r in rows]

    assert report.database.startswith("signoff_bench_")
    assert report.database not in asyncio.run(leftover())


def test_an_unreachable_postgresql_is_reported_not_raised(tmp_path: Path) -> None:
    nowhere = Settings(rows=10, postgres="postgresql://postgres@127.0.0.1:1/postgres", quiet=True)
    report = run_export(nowhere, tmp_path)
    assert report.unavailable == audit_export.UNAVAILABLE
    assert not report.complete
    assert audit_export.UNAVAILABLE in table(report)


def test_flags() -> None:
    assert parse([]).rows == 1_000_000
    assert parse(["--quick"]).rows == audit_export.QUICK_ROWS
    assert parse(["--rows", "2_000"]).rows == 2_000
    with pytest.raises(SystemExit):
        parse(["--rows", "0"])
    settings = parse_run(["--quick", "--suite", "audit-export", "--audit-rows", "500"])
    assert settings.suites == ("audit-export",) and settings.audit_rows == 500
    assert parse_run(["--quick"]).audit_rows == audit_export.QUICK_ROWS
    with pytest.raises(SystemExit):
        parse_run(["--suite", "nothing"])
