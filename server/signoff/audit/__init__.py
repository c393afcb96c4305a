"""The audit log: one row per call and per refused decision, in SQL."""

from signoff.audit.log import AuditEntry, AuditLog, AuditStatus, audit_revision, open_audit

__all__ = ["AuditEntry", "AuditLog", "AuditStatus", "audit_revision", "open_audit"]
