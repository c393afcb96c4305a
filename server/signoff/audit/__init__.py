"""The audit log: one row per call and per refused decision, in SQL.

The rows' own types load at once; the log itself, which needs SQLAlchemy and Alembic,
loads when first asked for, so ``import signoff`` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from signoff.audit.entries import AuditEntry, AuditError, AuditStatus

if TYPE_CHECKING:
    from signoff.audit.log import AuditLog, audit_revision, open_audit

__all__ = ["AuditEntry", "AuditError", "AuditLog", "AuditStatus", "audit_revision", "open_audit"]

_FROM_LOG = {"AuditLog", "audit_revision", "open_audit"}


def __getattr__(name: str) -> Any:
    if name in _FROM_LOG:
        from signoff.audit import log

        return getattr(log, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
