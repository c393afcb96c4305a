"""How the dashboard's audit table shows a row's outcome and duration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from signoff.web.auditview import audit_cells


def row(status: str, error: str | None = None, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": 1,
        "ts": datetime(2026, 12, 1, tzinfo=UTC),
        "site": "demo",
        "action": "refund",
        "kind": "write",
        "status": status,
        "decided_by": None,
        "level": None,
        "ip": None,
        "user_agent": None,
        "duration_ms": None,
        "params": {"order_id": 1},
        "result": None,
        "response": None,
        "error": error,
        "params_text": None,  # rows from before revision 0006
        "result_text": None,
        "conversation_id": "conv-1",
        "card_id": None,
    }
    return {**values, **changes}


def test_errors_are_marked_and_reasons_are_plain_text() -> None:
    assert audit_cells(row("failed", "card declined"))["outcome_style"] == "error"
    assert audit_cells(row("refused", "wrong user"))["outcome_style"] == "error"
    assert audit_cells(row("cancelled", "the user declined"))["outcome_style"] == "reason"
    waiting = audit_cells(row("pending_confirmation", "waits for the visitor"))
    assert (waiting["outcome_style"], waiting["outcome"]) == ("reason", "waits for the visitor")
    done = audit_cells(row("success", result={"refunded": 20}, response={"status": 201}))
    assert (done["outcome_style"], done["outcome"]) == (
        "doc",
        '{"status":201} · {"refunded":20}',
    )


def test_a_call_in_words_reads_in_words_with_its_documents_on_hover() -> None:
    done = audit_cells(
        row(
            "success",
            params_text="Order: #1\nAmount: $20.00",
            result={"refunded": 20},
            result_text="Refunded $20.00 on order #1",
        )
    )
    assert (done["params"], done["params_in_words"]) == ("Order: #1 · Amount: $20.00", True)
    assert done["params_doc"] == '{"order_id":1}'
    assert (done["outcome_style"], done["outcome"]) == ("words", "Refunded $20.00 on order #1")
    old = audit_cells(row("success"))
    assert (old["params"], old["params_in_words"]) == ('{"order_id":1}', False)


def test_short_durations_keep_a_tenth_of_a_millisecond() -> None:
    assert audit_cells(row("success", duration_ms=0.123))["duration"] == "0.1 ms"
    assert audit_cells(row("success", duration_ms=42.6))["duration"] == "43 ms"
    assert audit_cells(row("pending_confirmation"))["duration"] == ""
