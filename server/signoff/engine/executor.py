"""Running calls: one at a time, timed, bounded, redacted into the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from signoff.audit import AuditEntry, AuditStatus
from signoff.core.actions import Action
from signoff.core.cards import Card
from signoff.core.redact import redact, scrub_text
from signoff.engine.context import ActionContext
from signoff.store import SessionRecord

log = logging.getLogger("signoff.engine")

MAX_RESULT_CHARS = 2000


@dataclass
class Outcome:
    ok: bool
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0

    def tool_content(self) -> dict[str, Any]:
        if self.ok:
            return {"status": "ok", "result": self.result}
        return {"status": "error", "error": self.error}


def bounded(result: Any) -> Any:
    """A result small enough to keep in a frame or an audit row; cut to a summary if not."""
    text = json.dumps(result, ensure_ascii=False)
    if len(text) <= MAX_RESULT_CHARS:
        return result
    return {"summary": text[:MAX_RESULT_CHARS], "truncated": True}


def idempotency_key(scope: str, index: int) -> str:
    return hashlib.sha256(f"{scope}:{index}".encode()).hexdigest()[:32]


def json_safe(value: Any) -> Any:
    """An action's return value as plain JSON, for the conversation and the frames."""
    return json.loads(json.dumps(value, default=str))


async def run_call(action: Action, args: dict[str, Any], ctx: ActionContext) -> Outcome:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(action.run_timeout):
            result = await action.func(ctx, **action.bind(args))
        outcome = Outcome(True, json_safe(result))
    except TimeoutError:
        outcome = Outcome(False, error=f"timed out after {action.run_timeout:g}s")
    except Exception as exc:  # an action's failure is reported, never a server crash
        log.warning("action %s failed: %s", action.name, type(exc).__name__)
        outcome = Outcome(False, error=str(exc) or type(exc).__name__)
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    return outcome


class Auditor:
    """Builds audit rows with params and results redacted before they leave memory."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"signoff.audit:" + secret.encode()).digest()

    def entry(
        self,
        scope: SessionRecord | Card,
        action: Action | None,
        name: str,
        args: dict[str, Any],
        status: AuditStatus,
        *,
        card_id: str | None = None,
        decided_by: str | None = None,
        outcome: Outcome | None = None,
        error: str | None = None,
    ) -> AuditEntry:
        sensitive = action.sensitive if action else frozenset()
        freeform = action.freeform if action else frozenset()
        result = None
        if outcome is not None and outcome.ok:
            result = bounded(
                redact(outcome.result, sensitive=sensitive, freeform=freeform, key=self._key)
            )
        if outcome is not None and not outcome.ok:
            error = outcome.error
        return AuditEntry(
            ts=datetime.now(UTC),
            site=scope.site,
            session_id=scope.session_id,
            conversation_id=scope.conversation_id,
            user_id=scope.user_id,
            card_id=card_id,
            action=name,
            kind=str(action.kind) if action else "unknown",
            status=status,
            params=redact(args, sensitive=sensitive, freeform=freeform, key=self._key),
            result=result,
            # Exception text is the action author's and may quote the args.
            error=scrub_text(error, _texts(args, freeform)) if error else None,
            decided_by=decided_by,
            duration_ms=outcome.duration_ms if outcome else None,
        )


def _texts(args: dict[str, Any], freeform: frozenset[str]) -> list[str]:
    return [v if isinstance(v, str) else json.dumps(v) for k, v in args.items() if k in freeform]
