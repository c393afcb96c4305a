"""Each call in words beside its documents, and chain version 3, whose hashes cover them.

Revision ID: 0006
Revises: 0005

Rows written before this revision keep NULL in both and their chain version (1 or 2),
whose hashes do not cover the new columns: an export shows their documents alone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("params_text", sa.Text()))
        batch.add_column(sa.Column("result_text", sa.Text()))


def downgrade() -> None:
    # Rows of version 3 would no longer check without their words.
    raise RuntimeError("audit migrations only go forward; restore a backup instead")
