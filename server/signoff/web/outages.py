"""Failures of the services behind a request, not of the request: try again later (503).

The store (StoreUnavailable) and the audit database, which also holds teammates and keys
(SQLAlchemy's errors, and OSError for a connection that could not be made).
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from signoff.store import StoreUnavailable

OUTAGES: tuple[type[Exception], ...] = (StoreUnavailable, SQLAlchemyError, OSError)
