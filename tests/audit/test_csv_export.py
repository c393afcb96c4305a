"""The CSV export (``csv_chunks``) on SQLite and a real PostgreSQL: the same text for the
same rows. PostgreSQL writes it with COPY, SQLite through Python's csv module."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone

from signoff.audit import AuditEntry, AuditLog, AuditStatus
from signoff.audit.query import CSV_COLUMNS, DOCUMENTS, PIECE_BYTES, AuditFilter, csv_chunks

IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TRICKY = 'a, "b"\nc\rd; ünïcode ✓'


def entry(n: int, **changes: object) -> AuditEntry:
    values: dict[str, object] = {
        "ts": START + timedelta(minutes=n),
        "site": "demo",
        "session_id": f"s{n}",
        "conversation_id": "conv-1",
        "user_id": "u1",
        "action": "refund",
        "kind": "write",
        "status": AuditStatus.SUCCESS,
        "params": {"n": n},
    }
    values.update(changes)
    return AuditEntry(**values)  # type: ignore[arg-type]


ENTRIES = [
    entry(0),
    entry(
        1,
        ts=datetime(2024, 5, 1, 18, 0, 0, 123456, tzinfo=IST),
        card_id="card-1",
        status=AuditStatus.FAILED,
        error=TRICKY,
        decided_by="teammate:ana",
        level=2,
        ip="10.0.0.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64)",
        duration_ms=100.0,
        result={"ok": False},
        response={"status": 402, "body": "declined"},
    ),
    entry(2, user_id="", error="", duration_ms=3.25, params={"note": TRICKY, "amount": 12.5}),
    entry(3, conversation_id="o'brien", status=AuditStatus.REFUSED, duration_ms=0.1),
]
# The cells of each entry, but for its documents and hash chain: RFC 4180 quoting, an
# empty cell for NULL and for an empty string, times in UTC to the microsecond, floats
# as Python writes them.
EXPECTED = [
    ["1", "2024-05-01T12:00:00.000000+00:00", "demo", "s0", "conv-1", "u1", "", "refund",
     "write", "success", "", "", "", "", ""],
    ["2", "2024-05-01T12:30:00.123456+00:00", "demo", "s1", "conv-1", "u1", "card-1", "refund",
     "write", "failed", "teammate:ana", "2", "10.0.0.7", "Mozilla/5.0 (X11; Linux x86_64)",
     "100.0"],
    ["3", "2024-05-01T12:02:00.000000+00:00", "demo", "s2", "conv-1", "", "", "refund",
     "write", "success", "", "", "", "", "3.25"],
    ["4", "2024-05-01T12:03:00.000000+00:00", "demo", "s3", "o'brien", "u1", "", "refund",
     "write", "refused", "", "", "", "", "0.1"],
]  # fmt: skip
PLAIN = CSV_COLUMNS[: CSV_COLUMNS.index("params")]


async def export(audit: AuditLog, where: AuditFilter | None = None) -> str:
    return "".join([piece async for piece in csv_chunks(audit.engine, where or AuditFilter())])


async def test_every_backend_writes_the_same_csv(audit: AuditLog) -> None:
    for e in ENTRIES:
        await audit.record(e)
    text = await export(audit)
    assert text.startswith(",".join(CSV_COLUMNS) + "\n")
    assert "\r\n" not in text  # records end in LF on every backend
    header, *records = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(header) == CSV_COLUMNS
    assert [r[: len(PLAIN)] for r in records] == EXPECTED
    cells = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in records]
    assert cells[1]["error"] == TRICKY and cells[2]["error"] == ""
    for e, cell in zip(ENTRIES, cells, strict=True):
        for name in DOCUMENTS:
            assert json.loads(cell[name] or "null") == getattr(e, name)
    stored = await audit.rows()
    for row, cell in zip(stored, cells, strict=True):
        assert [cell[k] for k in ("seq", "prev_hash", "row_hash", "key_id")] == [
            str(row["seq"]), row["prev_hash"], row["row_hash"], row["key_id"]
        ]  # fmt: skip


async def test_filters_reach_the_export(audit: AuditLog) -> None:
    for e in ENTRIES:
        await audit.record(e)
    picked = AuditFilter(
        statuses=("failed", "refused"), since=datetime(2024, 5, 1, 17, 31, tzinfo=IST)
    )
    assert await ids(audit, picked) == ["2", "4"]
    assert await ids(audit, AuditFilter(conversation="o'brien")) == ["4"]
    assert await ids(audit, AuditFilter(conversation="o'brien", decided_by="visitor")) == []
    assert await ids(audit, AuditFilter(decided_by="teammate", sites=frozenset({"demo"}))) == ["2"]
    nothing = await export(audit, AuditFilter(site="elsewhere"))
    assert nothing == ",".join(CSV_COLUMNS) + "\n"


async def ids(audit: AuditLog, where: AuditFilter) -> list[str]:
    records = list(csv.reader(io.StringIO(await export(audit, where), newline="")))
    return [r[0] for r in records[1:]]


async def test_a_reader_that_stops_early_leaves_the_database_usable(audit: AuditLog) -> None:
    big = {"blob": "x" * 2000}
    await audit.record(*[entry(n, params=big) for n in range(3 * PIECE_BYTES // 2000)])
    pieces = csv_chunks(audit.engine, AuditFilter())
    first = await anext(pieces)
    assert first.startswith("id,ts,")
    await pieces.aclose()
    # The connection the COPY was cancelled on is not handed out again.
    text = await export(audit, AuditFilter(session="s7"))
    assert len(text.splitlines()) == 2
    assert len(await audit.rows(session_id="s7")) == 1


async def test_cells_a_spreadsheet_would_run_as_formulas_are_marked_as_text(
    audit: AuditLog,
) -> None:
    """OWASP's CSV injection: a text cell that begins with = + - @, a tab or a carriage
    return is written after an apostrophe, the same on both backends; JSON is left as it
    is (it can begin with - only as a number)."""
    await audit.record(
        entry(
            0,
            conversation_id="\r=1+1",
            user_id="-2+3",
            card_id="+1",
            action='=HYPERLINK("http://evil.example","open")',
            decided_by="@SUM(A1)",
            ip="=cmd|' /C calc'!A0",
            user_agent="\t=1",
            error="-not a formula- but marked all the same",
            result=-5,
        ),
        entry(1, user_agent="Mozilla/5.0 (=inside is fine)", error="a-b+c"),
    )
    records = list(csv.reader(io.StringIO(await export(audit), newline="")))[1:]
    cells = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in records]
    assert {k: cells[0][k] for k in ("conversation_id", "user_id", "card_id", "action")} == {
        "conversation_id": "'\r=1+1",
        "user_id": "'-2+3",
        "card_id": "'+1",
        "action": '\'=HYPERLINK("http://evil.example","open")',
    }
    assert {k: cells[0][k] for k in ("decided_by", "ip", "user_agent", "error")} == {
        "decided_by": "'@SUM(A1)",
        "ip": "'=cmd|' /C calc'!A0",
        "user_agent": "'\t=1",
        "error": "'-not a formula- but marked all the same",
    }
    assert cells[0]["result"] == "-5"
    assert (cells[1]["user_agent"], cells[1]["error"]) == ("Mozilla/5.0 (=inside is fine)", "a-b+c")
