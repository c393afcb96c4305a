"""A known set of audit rows, written through the server's own audit log, for the tests
that read the log back over the API, the dashboard and the browser.

Rows are written one by one in list order, a minute apart, so the n-th entry is the n-th
row by id and by time alike, and each carries its index in ``params["n"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from signoff.audit.entries import AuditEntry, AuditStatus
from signoff.config import Site
from tests.support import Server

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TRICKY = 'refund, "partial"\nsecond line; ünïcode ✓'
HOSTILE = '<img src=x onerror="alert(1)">'
SITES = {
    "demo": Site("demo", ("http://127.0.0.1:*", "http://localhost:*")),
    "blog": Site("blog", ("http://127.0.0.1:*",)),
}

# (site, conversation, action, status, decided_by, level, extra fields)
ROWS: list[tuple[str, str, str, str, str | None, int | None, dict[str, Any]]] = [
    ("demo", "conv-1", "cancel_order", "success", "user:alice", None, {"result": {"ok": True}}),
    ("demo", "conv-1", "refund", "cancelled", "user:alice", None, {}),
    ("demo", "conv-2", "refund", "rejected", "teammate:lena", 1, {"ip": "10.0.0.7"}),
    (
        "demo",
        "conv-2",
        "refund",
        "success",
        "teammate:ana",
        2,
        {"response": {"status": 200, "body": "ok"}, "user_agent": "Mozilla/5.0 (X11)"},
    ),
    ("demo", "conv-3", "delete_spam", "success", "auto", None, {"duration_ms": 3.25}),
    ("demo", "conv-3", "cancel_order", "failed", "user:bob", None, {"error": TRICKY}),
    ("demo", "conv-3", "cancel_order", "expired", None, None, {}),
    ("blog", "conv-9", "refund", "cancelled", "user:zed", None, {}),
    ("demo", "conv-1", "note", "refused", "teammate:key:desk", None, {"note": TRICKY}),
    ("blog", "conv-9", "refund", "success", "teammate:lena", 1, {}),
    ("demo", "conv-4", HOSTILE, "cancelled", "user:carol", None, {"note": HOSTILE}),
]


def entry(n: int) -> AuditEntry:
    site, conversation, action, status, decided_by, level, given = ROWS[n]
    extra = dict(given)
    params: dict[str, Any] = {"n": n, "order_id": 1000 + n}
    if "note" in extra:
        params["note"] = extra.pop("note")
    return AuditEntry(
        ts=START + timedelta(minutes=n),
        site=site,
        session_id=f"s-{conversation}",
        conversation_id=conversation,
        user_id=(decided_by or "user:anon").removeprefix("user:"),
        action=action,
        kind="write",
        status=AuditStatus(status),
        params=params,
        card_id=f"card-{conversation}",
        decided_by=decided_by,
        level=level,
        ip=extra.pop("ip", "192.0.2.1"),
        **extra,
    )


async def seed(server: Server) -> None:
    audit = server.app.state.runtime.audit
    for n in range(len(ROWS)):
        await audit.record(entry(n))


def matching(test: Callable[[AuditEntry], bool]) -> list[int]:
    """The indexes of the sample rows ``test`` holds for, newest first."""
    return [n for n in reversed(range(len(ROWS))) if test(entry(n))]
