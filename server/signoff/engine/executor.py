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

from signoff import metrics
from signoff.audit import AuditEntry, AuditStatus
from signoff.core.actions import Action
from signoff.core.cards import Card
from signoff.core.deciders import Decider
from signoff.core.fields import fields_text, generic_fields, without_digests
from signoff.core.redact import (
    is_sensitive_name,
    mask_sensitive_pairs,
    redact,
    scrub_text,
    strings_in,
)
from signoff.engine.context import ActionContext
from signoff.store import SessionRecord

log = logging.getLogger("signoff.engine")

MAX_RESULT_CHARS = 2000
MAX_BODY_SUMMARY = 200


@dataclass
class Outcome:
    ok: bool
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0
    # The last HTTP response the call received through ctx.http: status and body text.
    # Kept only until the audit row summarises it.
    response: tuple[int, str | None, int] | None = None  # status, body, size (ctx.http)

    def tool_content(self) -> dict[str, Any]:
        """What the bot is told; a large result is cut, as it is in frames and the audit log."""
        if self.ok:
            return {"status": "ok", "result": bounded(self.result)}
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
        outcome, how = Outcome(True, json_safe(result)), "ok"
    except TimeoutError:
        outcome = Outcome(False, error=f"timed out after {action.run_timeout:g}s")
        how = "timeout"
    except Exception as exc:  # an action's failure is reported, never a server crash
        log.warning("action %s failed: %s", action.name, type(exc).__name__)
        outcome, how = Outcome(False, error=str(exc) or type(exc).__name__), "failed"
    took = time.perf_counter() - started
    metrics.action_runs.labels(action.name, how).observe(took)
    outcome.duration_ms = took * 1000
    outcome.response = ctx.http.answered()
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
        decider: Decider | None = None,
        outcome: Outcome | None = None,
        error: str | None = None,
    ) -> AuditEntry:
        """The row of one call; ``decider`` is None for a card that ended undecided."""
        sensitive = action.sensitive if action else frozenset()
        freeform = action.freeform if action else frozenset()
        # A call refused before any card held it (unknown action, bad args), or whose
        # action is gone, was never checked against a signature: the bot may have put a
        # person's words under any name, so every string is taken for freeform text.
        unchecked = action is None or (status is AuditStatus.REFUSED and card_id is None)
        # What the call was given in confidence, to be masked wherever it is echoed back.
        private = _texts(args, freeform) + _texts(args, _sensitive_names(args, sensitive))
        if unchecked:
            private += strings_in(args)
        result = None
        if outcome is not None and outcome.ok:
            result = bounded(
                redact(
                    outcome.result,
                    sensitive=sensitive,
                    freeform=freeform,
                    quoted=private,
                    key=self._key,
                )
            )
        if outcome is not None and not outcome.ok:
            error = outcome.error
        response = None
        if outcome is not None and outcome.response is not None:
            code, body, size = outcome.response
            summary = self._body_summary(body, size, sensitive, freeform, private)
            response = {"status": code, "body": summary}
        params = redact(
            args, sensitive=sensitive, freeform=freeform, key=self._key, all_freeform=unchecked
        )
        params_text, result_text = _in_words(
            None if unchecked else action, params, result if outcome and outcome.ok else None
        )
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
            params=params,
            result=result,
            # Exception text is the action author's and may quote the args (or a URL's).
            error=_scrubbed(error, private, sensitive) if error else None,
            decided_by=decider.signature if decider else None,
            level=decider.level if decider else None,
            ip=decider.ip if decider else None,
            user_agent=decider.user_agent if decider else None,
            response=response,
            duration_ms=outcome.duration_ms if outcome else None,
            params_text=params_text,
            result_text=result_text,
        )

    def _body_summary(
        self,
        body: str | None,
        size: int,
        sensitive: frozenset[str],
        freeform: frozenset[str],
        private: list[str],
    ) -> str:
        """The start of a response body, redacted like params: a JSON body field by field,
        other text by its sensitively named pairs, card numbers and the call's private args.
        A body too large to read whole, or one that looks like JSON but does not parse
        (its fields could not be told apart), is recorded by its size alone."""
        withheld = f"[{size} bytes, not shown]"
        if body is None:
            return withheld
        try:
            parsed = json.loads(body)
        except ValueError:
            if body.lstrip().startswith(("{", "[")):
                return withheld
            text = mask_sensitive_pairs(body, sensitive)
        else:
            redacted = redact(
                parsed, sensitive=sensitive, freeform=freeform, quoted=private, key=self._key
            )
            text = json.dumps(redacted, ensure_ascii=False)
        # Masked before it is cut, so a cut never leaves half a card number unmasked.
        return _scrubbed(text, private, sensitive)[:MAX_BODY_SUMMARY]


def _in_words(action: Action | None, params: dict[str, Any], result: Any) -> tuple[str, str | None]:
    """A row's args and result in words, made from what the row keeps (redacted), so they
    say nothing its documents do not: a call the card showed by its action's labels and
    formats, one never checked against an action by its names alone."""
    shown = without_digests(params)
    if action is None:
        return fields_text(generic_fields(shown)), None
    told = action.display.result(shown, without_digests(result)) if result is not None else None
    return fields_text(action.display.fields(shown)), told or None


def _scrubbed(text: str, private: list[str], sensitive: frozenset[str]) -> str:
    return mask_sensitive_pairs(scrub_text(text, private), sensitive)


def _sensitive_names(args: dict[str, Any], sensitive: frozenset[str]) -> frozenset[str]:
    return frozenset(name for name in args if is_sensitive_name(name, sensitive))


def _texts(args: dict[str, Any], names: frozenset[str]) -> list[str]:
    """The values of the named args as text, as they may be echoed in an error or a body."""
    return [v if isinstance(v, str) else json.dumps(v) for k, v in args.items() if k in names]
