"""The audit table, in SQLAlchemy Core so the same schema serves SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("site", String(64), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("conversation_id", String(64), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("card_id", String(64)),
    Column("action", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("result", JSON),
    Column("error", Text),
    Column("decided_by", String(300)),
    Column("duration_ms", Float),
    Index("ix_audit_events_ts", "ts"),
    Index("ix_audit_events_conversation", "conversation_id"),
    Index("ix_audit_events_status_ts", "status", "ts"),
)
