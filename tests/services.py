"""The real services tests run against: PostgreSQL on this machine, never a fake.

Tests that need PostgreSQL take the ``postgres_url`` fixture (tests/conftest.py): the URL of
a database that is empty when the test starts. One database is created per test run (its
name is unique, so runs in other checkouts do not meet) and dropped at the end; between
tests its schema is dropped and created again, which is much faster than a new database.
``postgres_database()`` gives a database of one's own, for a test that needs two.

The server comes from ``SIGNOFF_TEST_POSTGRES``, an admin URL allowed to create databases.
If it cannot be reached the test fails (it is never skipped), so a CI run without the
service fails rather than passes quietly.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

POSTGRES_ADMIN_URL = os.environ.get(
    "SIGNOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def _url(database: str | None = None) -> URL:
    url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    return url if database is None else url.set(database=database)


async def _connect(url: URL) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url.render_as_string(hide_password=False), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        error = exc
    pytest.fail(  # outside the except block, so the report is this message alone
        f"PostgreSQL is not reachable at {url.render_as_string(hide_password=True)} "
        f"({error}). Start it (on Debian: {START_POSTGRES}), or point "
        "SIGNOFF_TEST_POSTGRES at a server where this user may create databases.",
        pytrace=False,
    )


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A new, empty database with a unique name, dropped afterwards; yields its
    ``postgresql://`` URL, the form ``SIGNOFF_AUDIT`` takes."""
    name = f"signoff_test_{secrets.token_hex(6)}"
    admin = await _connect(_url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _url(name).render_as_string(hide_password=False)
    finally:
        admin = await _connect(_url())
        try:
            # FORCE: a test that failed halfway may have left connections open.
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def empty_postgres_database(url: str) -> None:
    """Drop everything in the database at ``url``, closing its other connections first."""
    conn = await _connect(make_url(url))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
