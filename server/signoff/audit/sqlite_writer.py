"""Write transactions on an SQLite audit file, on the event loop's thread when they can.

A group commit on SQLite (WAL, ``synchronous=NORMAL``) is an append to the log file with
no wait for the disk: about 0.3 ms of CPU for a one-row commit. Handed to a worker
thread, the same commit cost more than it saved: the trip there and back, and the two
threads taking the GIL from each other. (With this change and that day's others, a card
round trip's server CPU fell to 0.78-0.91 of before, alternating runs: docs/performance.md,
2026-12-05; this change's own share was not measured apart.) So a transaction runs at
once, on the loop's thread, when the file's write lock is free; the two things that can
make a write wait do not happen there:

- another connection holding the write lock (the CLI pruning, a second process on the
  same file): the transaction finds the lock taken at once, with no busy wait, and runs
  in a worker thread instead, which waits for the lock as long as SQLite's busy timeout;
- a checkpoint (copying the log into the database file, which waits for the disk): the
  loop's connection never checkpoints; a worker thread does, every ``CHECKPOINT_ROWS``,
  while commits go on. SQLite starts the log over from its beginning only at a commit
  that finds every frame copied, which under steady load a pass never achieves (commits
  add frames meanwhile): the log file would only grow. So the commit after a pass waits
  (off the loop) for a second, short pass over what came during the first: a millisecond
  or so, where the first takes 10-25 ms of copying under load.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import OperationalError

from signoff.core.canonical import canonical_json

log = logging.getLogger("signoff.audit")

# Rows written between checkpoints: SQLite's own default is every 1,000 log pages, and a
# commit of one row changes a few pages.
CHECKPOINT_ROWS = 1_000

Transaction = Callable[[Connection], None]


class SqliteWriter:
    """Runs write transactions on one SQLite file (``run``), and checkpoints its log."""

    def __init__(
        self,
        url: URL,
        on_connect: Callable[[Any, Any], None],
        checkpoint_rows: int = CHECKPOINT_ROWS,
    ) -> None:
        url = url.set(drivername="sqlite")
        # The loop's connection: a taken lock fails at once, and it never checkpoints.
        self._now = create_engine(url, json_serializer=canonical_json, connect_args={"timeout": 0})
        event.listen(self._now, "connect", on_connect)
        event.listen(self._now, "connect", _no_checkpoints)
        # The worker thread's: it waits for the lock, and checkpoints.
        self._waiting = create_engine(url, json_serializer=canonical_json)
        event.listen(self._waiting, "connect", on_connect)
        self.checkpoint_rows = checkpoint_rows
        self._rows_since_checkpoint = 0
        self._checkpoint: asyncio.Task[None] | None = None  # a pass, while commits go on
        self._catch_up = False  # a pass has ended: the next commit waits for a short one
        self.waited = 0  # transactions that found the lock taken and ran in a thread
        self.checkpoints = 0

    @property
    def engines(self) -> tuple[Engine, Engine]:
        """The loop's engine and the worker thread's."""
        return self._now, self._waiting

    async def run(self, transaction: Transaction, rows: int) -> None:
        """Run ``transaction`` (``rows`` rows) in a transaction of its own and commit it.
        The transaction must begin with ``BEGIN IMMEDIATE`` (it may run twice: the
        first time finding the lock taken, before it changed anything)."""
        if self._catch_up:
            self._catch_up = False
            await self._checkpoint_pass()
        try:
            with self._now.begin() as conn:
                transaction(conn)
        except OperationalError as exc:
            if not _busy(exc):
                raise
            self.waited += 1
            await asyncio.to_thread(self._run_waiting, transaction)
        self._rows_since_checkpoint += rows
        if self._rows_since_checkpoint >= self.checkpoint_rows and self._checkpoint is None:
            self._rows_since_checkpoint = 0
            self._checkpoint = asyncio.create_task(self._concurrent_pass())

    def _run_waiting(self, transaction: Transaction) -> None:
        with self._waiting.begin() as conn:
            transaction(conn)

    async def _concurrent_pass(self) -> None:
        try:
            await self._checkpoint_pass()
            self._catch_up = True
        finally:
            self._checkpoint = None

    async def _checkpoint_pass(self) -> None:
        try:
            await asyncio.to_thread(self._checkpoint_now)
            self.checkpoints += 1
        except (OperationalError, sqlite3.Error) as exc:
            # The log only grows meanwhile; the next pass takes it all.
            log.warning("audit log: SQLite checkpoint failed: %s", exc)

    def _checkpoint_now(self) -> None:
        # PASSIVE: copies what no reader still needs, and never blocks the writer.
        with self._waiting.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    async def close(self) -> None:
        if self._checkpoint is not None:
            await self._checkpoint
        self._now.dispose()
        self._waiting.dispose()


def _busy(exc: OperationalError) -> bool:
    """Whether SQLite said busy (plain, or an extended code such as BUSY_RECOVERY)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def _no_checkpoints(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()
