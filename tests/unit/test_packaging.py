"""What ``import signoff`` costs, and what the optional extras leave out of it."""

from __future__ import annotations

import json
import subprocess
import sys

# Loaded only when a feature that needs them is used: the audit database's libraries at
# start-up of a server or a command, the extras only when configured.
LOADED_WHEN_USED = ("sqlalchemy", "alembic", "aiosqlite", "asyncpg", "openai", "slack_sdk")


def modules_after(code: str) -> set[str]:
    found = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(list(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(found.stdout.splitlines()[-1]))


def test_importing_signoff_loads_no_database_library_nor_extra() -> None:
    loaded = modules_after("import signoff\nfrom signoff import Signoff, team")
    assert not loaded & set(LOADED_WHEN_USED)


def test_the_audit_log_loads_when_asked_for() -> None:
    loaded = modules_after("from signoff.audit import AuditEntry, AuditStatus")
    assert "sqlalchemy" not in loaded
    loaded = modules_after("from signoff.audit import open_audit")
    assert {"sqlalchemy", "alembic"} <= loaded
