"""Bringing the audit database's schema up to date with Alembic, configured in code.

Several server instances may start at once against one database, so the upgrade runs
in one transaction that first takes a lock: the first instance migrates, the others wait
for it and then find nothing left to do. On PostgreSQL that is an advisory lock held for
the transaction (``pg_advisory_xact_lock``), so the commit or the rollback releases it even
if the migration fails; on SQLite it is the file's write lock (``BEGIN IMMEDIATE``), which
also makes the migration all-or-nothing there.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Any fixed 64-bit number, the same for every signoff instance and release.
LOCK_KEY = 0x5167_6E6F_6666_A0D1


def alembic_config(connection: Connection, chain_key: bytes | None = None) -> Config:
    """Alembic's configuration for running its commands on ``connection``. A migration
    that signs audit rows finds the chain's key (signoff.core.chain) as the attribute
    ``chain_key``; None when whoever runs it was not given the server's secret."""
    config = Config()
    # Config values go through configparser, which reads "%" as interpolation.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    config.attributes["chain_key"] = chain_key
    return config


def head() -> str | None:
    """The newest revision signoff ships."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


async def upgrade(engine: AsyncEngine, chain_key: bytes | None = None) -> None:
    """Bring the schema to the newest revision; safe to run from several instances.
    ``chain_key`` lets a migration sign rows (see ``alembic_config``)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        else:  # SQLite's driver has begun nothing yet, so this is the transaction's start
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync, chain_key), "head"))


async def revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; ``None`` for an empty database."""
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
