"""The hash chain's arithmetic, without a database (tests/audit has it with both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from signoff.core.chain import (
    CHAINED,
    COVERED,
    GENESIS,
    Anchor,
    ChainCheck,
    Fault,
    chain_key,
    key_id,
    link,
    row_hash,
)

KEY = chain_key("unit-test-secret-0123")
KEYS = {key_id(KEY): KEY}


def chain(count: int, site: str = "shop") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "id": seq * 10,
            "ts": datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=seq),
            "site": site,
            "action": f"a{seq}",
            "params": {"n": seq},
        }
        for seq in range(1, count + 1)
    ]
    link(KEY, rows, {site: (0, GENESIS)})
    return rows


def version_1_chain(count: int) -> list[dict[str, Any]]:
    """Rows as signoff chained them before revision 0004: the hash leaves out the id."""
    rows, prev = [], GENESIS
    for row in chain(count):
        del row["chain_version"]
        row["prev_hash"] = prev
        row["row_hash"] = prev = row_hash(KEY, row)
        rows.append(row)
    return rows


def first_problem(rows: list[dict[str, Any]], end: tuple[int, str]) -> Any:
    check = ChainCheck(KEYS, Anchor("shop", 0, GENESIS, *end))
    for row in rows:
        if (problem := check.feed(row)) is not None:
            return problem
    return check.end()


def test_the_hash_is_the_same_for_the_same_instant_and_number_however_written() -> None:
    [row] = chain(1)
    ist = timezone(timedelta(hours=5, minutes=30))
    same = {**row, "ts": row["ts"].astimezone(ist), "params": {"n": 1.0}}
    assert row_hash(KEY, same) == row["row_hash"]
    assert row_hash(KEY, {**row, "params": {"n": 1.5}}) != row["row_hash"]
    assert row_hash(chain_key("another-secret-000000"), row) != row["row_hash"]


def test_an_intact_chain_has_no_problem() -> None:
    rows = chain(4)
    assert first_problem(rows, (4, rows[-1]["row_hash"])) is None


def test_each_fault_is_named_at_its_row() -> None:
    rows = chain(4)
    end = (4, rows[-1]["row_hash"])
    edited = [*rows[:1], {**rows[1], "action": "refund"}, *rows[2:]]
    assert (first_problem(edited, end).fault, first_problem(edited, end).row_id) == (
        Fault.MODIFIED,
        20,
    )
    gone = first_problem([*rows[:1], *rows[2:]], end)
    assert (gone.fault, gone.seq) == (Fault.DELETED, 2)
    fake = {**rows[1], "id": 99, "seq": 2, "prev_hash": rows[0]["row_hash"], "row_hash": "0" * 64}
    moved = [{**r, "seq": r["seq"] + 1} for r in rows[1:]]  # renumbered to make room
    slipped = first_problem([rows[0], fake, *moved], (5, rows[-1]["row_hash"]))
    assert (slipped.fault, slipped.row_id) == (Fault.INSERTED, 99)
    replayed = first_problem([*rows[:2], dict(rows[1]), *rows[2:]], end)
    assert (replayed.fault, replayed.seq) == (Fault.INSERTED, 2)
    foreign = first_problem([*rows[:3], {**rows[3], "key_id": "someone-else"}], end)
    assert foreign.fault is Fault.FOREIGN_KEY


def test_the_recorded_end_catches_rows_cut_from_the_tail() -> None:
    rows = chain(4)
    problem = first_problem(rows[:2], (4, rows[-1]["row_hash"]))
    assert (problem.fault, problem.seq) == (Fault.DELETED, 3)
    assert "2 rows (seq 3 to 4) missing at the end" in str(problem)


def test_the_hash_covers_every_column_of_the_table_but_itself() -> None:
    from signoff.audit.query import CSV_COLUMNS
    from signoff.audit.schema import audit_events

    columns = {c.name for c in audit_events.columns}
    assert set(COVERED[3]) == columns - {"row_hash"}
    assert set(COVERED[2]) == columns - {"row_hash", "params_text", "result_text"}
    assert set(CHAINED) == set(COVERED[2]) - {"id", "chain_version"}  # version 1
    assert sorted(CSV_COLUMNS) == sorted(columns)  # an export carries all of them


def test_a_rows_id_version_and_words_are_covered() -> None:
    rows = chain(2)
    assert [r["chain_version"] for r in rows] == [3, 3]
    assert rows[1]["prev_hash"] == rows[0]["row_hash"]
    for changed in (
        {"id": 11},
        {"chain_version": 1},
        {"chain_version": 2},
        {"params_text": "Order: #2"},
        {"result_text": "Refunded"},
    ):
        problem = first_problem([{**rows[0], **changed}, rows[1]], (2, rows[1]["row_hash"]))
        assert (problem.fault, problem.row_id) == (Fault.MODIFIED, changed.get("id", 10))


def test_rows_chained_before_version_2_still_check_and_a_version_2_row_follows_them() -> None:
    old = version_1_chain(2)
    assert first_problem([{**old[0], "id": 99}, old[1]], (2, old[1]["row_hash"])) is None
    [new] = chain(1)
    new.update(id=30)
    link(KEY, [new], ends := {"shop": (2, old[1]["row_hash"])})
    assert first_problem([*old, new], ends["shop"]) is None
