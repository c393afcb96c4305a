"""Complete audit rows (decider's level, IP and user agent, HTTP response), the hash chain
and its per-site anchors.

Revision ID: 0003
Revises: 0002

Rows written before this revision have no place in the chain yet; revision 0004 chains
them, once, with the server's secret.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as table:
        table.add_column(sa.Column("level", sa.Integer()))
        table.add_column(sa.Column("ip", sa.Text()))
        table.add_column(sa.Column("user_agent", sa.Text()))
        table.add_column(sa.Column("response", DOCUMENT))
        table.add_column(sa.Column("seq", sa.BigInteger()))
        table.add_column(sa.Column("prev_hash", sa.String(64)))
        table.add_column(sa.Column("row_hash", sa.String(64)))
        table.add_column(sa.Column("key_id", sa.String(16)))
    op.create_index("ix_audit_events_site_seq", "audit_events", ["site", "seq"], unique=True)
    op.create_index("ix_audit_events_site_id", "audit_events", ["site", "id"])
    # Rows not chained yet: none once a server has started, so the check at each start
    # reads an empty index instead of the whole table.
    unchained = sa.text("seq IS NULL")
    op.create_index(
        "ix_audit_events_unchained",
        "audit_events",
        ["id"],
        postgresql_where=unchained,
        sqlite_where=unchained,
    )
    op.create_table(
        "audit_chains",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("purged_seq", sa.BigInteger(), nullable=False),
        sa.Column("purged_hash", sa.String(64), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    # Dropping the chain would leave the log without its tamper evidence.
    raise RuntimeError("audit migrations only go forward; restore a backup instead")
