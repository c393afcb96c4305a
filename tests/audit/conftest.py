"""An audit log on each backend, started (schema migrated) and closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from signoff.audit import AuditLog, open_audit
from tests.support import SECRET


@pytest.fixture
async def audit(audit_url: str) -> AsyncIterator[AuditLog]:
    audit = open_audit(audit_url, SECRET)
    await audit.start()
    try:
        yield audit
    finally:
        await audit.close()
