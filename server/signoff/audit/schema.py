"""The database's tables, in SQLAlchemy Core so one schema serves SQLite and PostgreSQL.

The audit log, and beside it the teammates and API keys that decide escalated cards.

This is the table as queries see it. The database gets it from the migrations in
``migrations/versions``; a test checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

# BIGINT on PostgreSQL: an audit log only grows. SQLite numbers rows only through an
# INTEGER PRIMARY KEY (and its integers are 64-bit anyway).
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")
# None is kept as SQL NULL, not JSON null: an empty cell in an export, IS NULL in SQL.
DOCUMENT = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant, stored in UTC and read back aware on every backend.

    PostgreSQL keeps ``timestamp with time zone``; SQLite keeps text without an offset
    (``sqlite_text``), so the value is turned to UTC before it is written and marked UTC
    when it is read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # whose local time? the log cannot know
            raise ValueError("audit timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_text(instant: datetime) -> str:
    """The one text SQLite holds for an instant: UTC, to the microsecond, no offset
    (``2026-05-01 12:00:00.000000``, as SQLAlchemy writes it). SQLite compares times as
    text, so a row holding the same instant in another spelling would slip past filters."""
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


metadata = MetaData()

# Text, not a bounded string, for what bots (action), host sites (user_id) and teammates
# (decided_by) choose: PostgreSQL enforces varchar lengths, and a refused row would fail
# the whole group commit it is in.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", ROW_ID, primary_key=True, autoincrement=True),
    Column("ts", UTCDateTime, nullable=False),
    Column("site", String(64), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("conversation_id", String(64), nullable=False),
    Column("user_id", Text, nullable=False),
    Column("card_id", String(64)),
    Column("action", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    Column("params", DOCUMENT, nullable=False),
    Column("result", DOCUMENT),
    Column("error", Text),
    Column("decided_by", Text),
    Column("duration_ms", Float),
    Column("level", Integer),  # the approval level a teammate decided
    Column("ip", Text),  # of whoever decided: visitor or teammate
    Column("user_agent", Text),
    Column("response", DOCUMENT),  # HTTP-backed actions: status code and a body summary
    # The call in words, as its card showed it ("Order: #1001" a line), and its result as
    # the sentence the visitor was told: what an export reads beside the documents.
    Column("params_text", Text),
    Column("result_text", Text),
    # The hash chain (signoff.core.chain): the row's place in its site's chain, the
    # previous row's hash, its own, which secret's key made them, and which fields the
    # hash covers (1 for rows chained before revision 0004, 2 before 0006).
    Column("seq", BigInteger),
    Column("prev_hash", String(64)),
    Column("row_hash", String(64)),
    Column("key_id", String(16)),
    Column("chain_version", SmallInteger, nullable=False, server_default=text("1")),
    Index("ix_audit_events_ts", "ts"),
    Index("ix_audit_events_conversation", "conversation_id"),
    Index("ix_audit_events_status_ts", "status", "ts"),
    Index("ix_audit_events_site_seq", "site", "seq", unique=True),
    Index("ix_audit_events_site_id", "site", "id"),
    # Rows in no chain: none but those put in behind signoff's back, which the server
    # names at each start by reading this index.
    Index(
        "ix_audit_events_unchained",
        "id",
        postgresql_where=text("seq IS NULL"),
        sqlite_where=text("seq IS NULL"),
    ),
)

# Each site's chain: where it ends (the last row written) and where it now begins (the
# last row purged by retention, whose hash the first kept row carries).
audit_chains = Table(
    "audit_chains",
    metadata,
    Column("site", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("row_hash", String(64), nullable=False),
    Column("purged_seq", BigInteger, nullable=False),
    Column("purged_hash", String(64), nullable=False),
    Column("purged_at", UTCDateTime),
)


# Teammates log into the dashboard (argon2 password hashes) and may be linked to a Slack
# user; API keys are for machines. Both carry their roles as a JSON list.
teammates = Table(
    "teammates",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("roles", DOCUMENT, nullable=False),
    Column("slack_user_id", String(64), unique=True),
    Column("sites", DOCUMENT),  # the sites whose cards they see and decide; NULL: all
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Who made it, as the person they count as for four eyes (signoff.accounts); NULL: the
    # operator, on the command line. Likewise for keys.
    Column("created_by", Text),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    # Unique: decisions are signed with it, and one name must be one decider.
    Column("name", Text, nullable=False, unique=True),
    # SHA-256 of the key's secret part: keys are long random strings, so a slow hash
    # would only slow every request down.
    Column("secret_hash", String(64), nullable=False),
    Column("roles", DOCUMENT, nullable=False),
    # The sites whose cards and users the key may touch; NULL for every site.
    Column("sites", DOCUMENT),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("created_by", Text),
)
