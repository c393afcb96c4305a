"""What the audit row keeps of an HTTP response an action received through ctx.http."""

from __future__ import annotations

import json

from signoff.audit import AuditStatus
from signoff.engine.executor import Auditor, Outcome
from signoff.store import SessionRecord

SESSION = SessionRecord("s1", "u1", "demo", "conv1", 0.0, 60.0)
SECRET_KEY = "sk-live-abc123"


def summary(body: str | None, size: int | None = None) -> str:
    size = size if size is not None else len((body or "").encode())
    outcome = Outcome(True, {"ok": True}, response=(200, body, size))
    row = Auditor("unit-test-secret-0123").entry(
        SESSION, None, "charge", {}, AuditStatus.SUCCESS, outcome=outcome
    )
    assert row.response is not None and row.response["status"] == 200
    return str(row.response["body"])


def test_a_large_json_body_is_redacted_field_by_field_before_it_is_cut() -> None:
    body = json.dumps(
        {"api_key": [SECRET_KEY], "password": {"v": "hunter2"}, "filler": "x" * 70_000}
    )
    kept = summary(body)
    assert SECRET_KEY not in kept and "hunter2" not in kept
    assert kept.startswith('{"api_key": "[redacted]", "password": "[redacted]"')
    assert len(kept) <= 200


def test_a_body_that_looks_like_json_but_does_not_parse_is_kept_as_its_size() -> None:
    broken = '{"api_key": ["' + SECRET_KEY + '"], "password": {"v": "hunter2"'
    assert summary(broken) == f"[{len(broken)} bytes, not shown]"


def test_a_body_too_large_to_read_whole_is_kept_as_its_size() -> None:
    assert summary(None, 5_000_000) == "[5000000 bytes, not shown]"


def test_plain_text_keeps_its_words_with_named_secrets_masked() -> None:
    assert summary(f"ok api_key={SECRET_KEY} done") == "ok api_key=[redacted] done"
