"""Who made each teammate and API key: the person they count as for four eyes.

Revision ID: 0005
Revises: 0004

Accounts made before this revision keep NULL, as those made on the command line do, and
count as themselves.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("teammates", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("created_by", sa.Text()))


def downgrade() -> None:
    # Without it, keys made through another account would count as their own person.
    raise RuntimeError("audit migrations only go forward; restore a backup instead")
