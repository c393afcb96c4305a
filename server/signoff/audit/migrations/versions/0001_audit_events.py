"""The audit table.

Revision ID: 0001
Revises: none

SQLite files written by signoff before it had migrations already hold this table; it
differs only in declaring VARCHAR(n) where this says TEXT, which SQLite stores alike.
They are adopted as they are, rows and all (IF NOT EXISTS).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("card_id", sa.String(64)),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("params", DOCUMENT, nullable=False),
        sa.Column("result", DOCUMENT),
        sa.Column("error", sa.Text()),
        sa.Column("decided_by", sa.Text()),
        sa.Column("duration_ms", sa.Float()),
        if_not_exists=True,
    )
    op.create_index("ix_audit_events_ts", "audit_events", ["ts"], if_not_exists=True)
    op.create_index(
        "ix_audit_events_conversation", "audit_events", ["conversation_id"], if_not_exists=True
    )
    op.create_index(
        "ix_audit_events_status_ts", "audit_events", ["status", "ts"], if_not_exists=True
    )


def downgrade() -> None:
    # Dropping the table would destroy the audit trail it exists to keep.
    raise RuntimeError("audit migrations only go forward; restore a backup instead")
