"""What an audit row says, apart from where it is kept: importing it loads no database
library, so the engine can build rows without SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class AuditStatus(StrEnum):
    PENDING_CONFIRMATION = "pending_confirmation"  # a level approved; the next one waits
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"  # a later call of a chain that stopped at a failure
    REFUSED = "refused"


@dataclass
class AuditEntry:
    ts: datetime
    site: str
    session_id: str
    conversation_id: str
    user_id: str
    action: str
    kind: str
    status: AuditStatus
    params: dict[str, Any]
    card_id: str | None = None
    result: Any = None
    error: str | None = None
    decided_by: str | None = None  # "auto", "user:<id>" or "teammate:<name>"
    level: int | None = None  # the approval level a teammate decided
    ip: str | None = None  # of whoever decided
    user_agent: str | None = None
    response: dict[str, Any] | None = None  # HTTP-backed actions: status and a body summary
    duration_ms: float | None = None
    params_text: str | None = None  # the args in words, a "Label: value" line each
    result_text: str | None = None  # the result as the sentence the visitor was told


class AuditError(ValueError):
    pass
