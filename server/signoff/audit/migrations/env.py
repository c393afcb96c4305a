"""Alembic's entry point for the audit database's migrations.

signoff runs it itself (``signoff db upgrade``, and at start-up) on a connection it has
already opened and locked; see ``signoff.audit.migrate``. There is no ``alembic.ini``.

A new migration is a file in ``versions/`` like ``0001_audit_events.py``, whose
``down_revision`` is the current head, and a matching change to ``schema.py``; a test
checks that the migrated database and ``schema.py`` agree, on SQLite and PostgreSQL.
Migrations only go forward: ``downgrade()`` refuses.
"""

from __future__ import annotations

from alembic import context

from signoff.audit.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the audit migrations with `signoff db upgrade`")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
