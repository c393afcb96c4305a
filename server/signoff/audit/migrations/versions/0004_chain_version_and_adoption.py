"""Chain version 2, whose hashes cover each row's id; and the one chaining of rows written
before the chain existed.

Revision ID: 0004
Revises: 0003

Rows written before revision 0003 have no place in a chain. This migration chains them,
oldest first, once, and only in a database where no chain was ever begun: where signoff
has chained rows, a row without a place in a chain was put there behind its back, and is
left for ``signoff audit verify`` to report. Nothing chains such rows after this (the
server only names them in its log).

Chaining signs rows with the key made from the server's secret. Whoever runs the upgrade
passes that key as the ``chain_key`` attribute (signoff.audit.migrate): ``signoff serve``
always can, ``signoff db upgrade`` when ``SIGNOFF_SECRET`` is set. Without it, a database
that holds such rows is not upgraded, and the error says why.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from signoff.audit.entries import AuditError
from signoff.audit.schema import DOCUMENT, ROW_ID, UTCDateTime
from signoff.core.chain import GENESIS, link

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

BATCH = 1000  # rows chained per statement

# The tables as this revision knows them; later revisions may add columns.
events = sa.Table(
    "audit_events",
    sa.MetaData(),
    sa.Column("id", ROW_ID, primary_key=True),
    sa.Column("ts", UTCDateTime),
    *(
        sa.Column(name, sa.Text())
        for name in (
            "site",
            "session_id",
            "conversation_id",
            "user_id",
            "card_id",
            "action",
            "kind",
            "status",
            "decided_by",
            "ip",
            "user_agent",
            "error",
            "prev_hash",
            "row_hash",
            "key_id",
        )
    ),
    sa.Column("level", sa.Integer()),
    sa.Column("duration_ms", sa.Float()),
    *(sa.Column(name, DOCUMENT) for name in ("params", "result", "response")),
    sa.Column("seq", sa.BigInteger()),
    sa.Column("chain_version", sa.SmallInteger()),
)
chains = sa.table(
    "audit_chains",
    sa.column("site"),
    sa.column("seq"),
    sa.column("row_hash"),
    sa.column("purged_seq"),
    sa.column("purged_hash"),
)
# What chaining a row writes: its place in the chain, and its time and documents again,
# in the one text form the hash is checked against (signoff.core.canonical).
WRITTEN = (
    *("seq", "prev_hash", "row_hash", "key_id", "chain_version"),
    *("ts", "params", "result", "response"),
)


def upgrade() -> None:
    op.add_column(
        "audit_events",
        sa.Column("chain_version", sa.SmallInteger(), nullable=False, server_default="1"),
    )
    chain_rows_from_before_the_chain()


def chain_rows_from_before_the_chain() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # Writers of an older release wait until this is done (SQLite: the upgrade holds
        # the file's write lock already).
        bind.execute(sa.text("LOCK TABLE audit_chains IN EXCLUSIVE MODE"))
    unchained = events.c.seq.is_(None)
    waiting = bind.execute(sa.select(sa.func.count()).where(unchained)).scalar_one()
    begun = bind.execute(sa.select(sa.func.count()).select_from(chains)).scalar_one()
    chained = bind.execute(sa.select(sa.func.count()).where(events.c.seq.is_not(None)))
    if not waiting or begun or chained.scalar_one():
        return
    key = context.config.attributes.get("chain_key")
    if key is None:
        raise AuditError(
            f"SIGNOFF_SECRET: revision 0004 chains the {waiting} audit rows written before "
            "revision 0003, which signs them with the server's secret: run `signoff db "
            "upgrade` with SIGNOFF_SECRET set, or start the server"
        )
    ends: dict[str, tuple[int, str]] = {}
    while True:
        found = bind.execute(sa.select(events).where(unchained).order_by(events.c.id).limit(BATCH))
        rows = [dict(row._mapping) for row in found]
        if not rows:
            break
        for row in rows:
            ends.setdefault(row["site"], (0, GENESIS))
        link(key, rows, ends, version=2)
        bind.execute(
            sa.update(events)
            .where(events.c.id == sa.bindparam("row_id"))
            .values({name: sa.bindparam(name) for name in WRITTEN}),
            [{"row_id": row["id"], **{name: row[name] for name in WRITTEN}} for row in rows],
        )
    bind.execute(
        sa.insert(chains),
        [
            {"site": site, "seq": seq, "row_hash": last, "purged_seq": 0, "purged_hash": GENESIS}
            for site, (seq, last) in sorted(ends.items())
        ],
    )


def downgrade() -> None:
    raise RuntimeError("audit migrations only go forward; restore a backup instead")
