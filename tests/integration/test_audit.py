"""The audit log in the running server, its URLs, and what only SQLite does.

What every backend must do is in tests/audit/test_audit_contract.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signoff.audit import AuditEntry, AuditStatus, open_audit
from signoff.audit.entries import AuditError
from signoff.audit.migrate import head
from signoff.config import Site
from tests.support import SECRET, CountingShop, running, settings, widget


async def test_a_confirmed_card_and_a_refused_decision_reach_the_audit_log(
    audit_url: str, tmp_path: Any
) -> None:
    shop = CountingShop()
    async with running(shop.app, settings(tmp_path, audit=audit_url)) as server:
        async with widget(server) as owner, widget(server) as intruder:
            card = await owner.open_card("wipe disk")
            await intruder.hello()
            await intruder.decide(card)
            await intruder.error("forbidden")
            await owner.decide(card)
            await owner.update(card["card_id"], "done")
        rows = await server.engine.audit.rows(card_id=card["card_id"])
    assert [(r["action"], r["status"]) for r in rows] == [
        ("wipe", "pending_confirmation"),
        ("wipe", "refused"),
        ("wipe", "success"),
    ]
    done = rows[2]
    assert done["params"] == {"target": "disk"}
    assert done["result"] == {"wiped": "disk"}
    assert done["decided_by"] and done["ts"].tzinfo is not None


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://signoff:secret@db.example:5432/audit",
        "postgresql+asyncpg://signoff:secret@db.example:5432/audit",
    ],
)
async def test_postgresql_urls_use_asyncpg(url: str) -> None:
    audit = open_audit(url)  # nothing is connected before start()
    assert audit.engine.url.drivername == "postgresql+asyncpg"
    assert audit.engine.url.database == "audit"
    await audit.close()


async def test_libpqs_sslmode_is_passed_on_as_asyncpgs_ssl() -> None:
    audit = open_audit("postgresql://signoff@db.example/audit?sslmode=require")
    assert dict(audit.engine.url.query) == {"ssl": "require"}
    await audit.close()


@pytest.mark.parametrize(
    "url",
    ["mysql://localhost/audit", "postgresql+psycopg2://localhost/audit", "not a url"],
)
def test_an_unsupported_audit_url_names_the_setting(url: str) -> None:
    with pytest.raises(AuditError, match="SIGNOFF_AUDIT"):
        open_audit(url)


async def test_an_unreachable_database_stops_start_naming_the_setting_not_the_password() -> None:
    audit = open_audit("postgresql://signoff:hunter2@127.0.0.1:1/audit")
    with pytest.raises(AuditError, match="SIGNOFF_AUDIT") as raised:
        await audit.start()
    assert "127.0.0.1:1" in str(raised.value)
    assert "hunter2" not in str(raised.value)
    await audit.close()


async def test_the_audit_file_is_in_wal_mode(tmp_path: Path) -> None:
    audit = open_audit(f"sqlite:///{tmp_path}/audit.db")
    await audit.start()
    async with audit.engine.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
    assert mode == "wal"
    await audit.close()


# The table as signoff created it before it had migrations.
BEFORE_MIGRATIONS = """
CREATE TABLE audit_events (
    id INTEGER NOT NULL, ts DATETIME NOT NULL, site VARCHAR(64) NOT NULL,
    session_id VARCHAR(64) NOT NULL, conversation_id VARCHAR(64) NOT NULL,
    user_id VARCHAR(256) NOT NULL, card_id VARCHAR(64), action VARCHAR(128) NOT NULL,
    kind VARCHAR(16) NOT NULL, status VARCHAR(32) NOT NULL, params JSON NOT NULL,
    result JSON, error TEXT, decided_by VARCHAR(300), duration_ms FLOAT, PRIMARY KEY (id)
);
CREATE INDEX ix_audit_events_ts ON audit_events (ts);
CREATE INDEX ix_audit_events_conversation ON audit_events (conversation_id);
CREATE INDEX ix_audit_events_status_ts ON audit_events (status, ts);
INSERT INTO audit_events (ts, site, session_id, conversation_id, user_id, action, kind,
    status, params) VALUES ('2024-05-01 09:30:00.000000', 'demo', 's1', 'conv1', 'u1',
    'wipe', 'destructive', 'success', '{"target": "disk"}');
"""


async def test_an_audit_file_from_before_migrations_is_adopted_with_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(BEFORE_MIGRATIONS)
    audit = open_audit(f"sqlite:///{path}", SECRET)
    await audit.start()
    assert await audit.revision() == head()
    await audit.record(
        AuditEntry(
            ts=datetime.now(UTC),
            site="demo",
            session_id="s2",
            conversation_id="conv2",
            user_id="u2",
            action="refund",
            kind="write",
            status=AuditStatus.SUCCESS,
            params={"amount": 20},
        )
    )
    old, new = await audit.rows()
    assert (old["action"], old["ts"]) == ("wipe", datetime(2024, 5, 1, 9, 30, tzinfo=UTC))
    assert (new["action"], new["params"]) == ("refund", {"amount": 20})
    await audit.close()


async def test_the_server_purges_rows_past_retention_by_itself(
    audit_url: str, tmp_path: Any
) -> None:
    shop = CountingShop()
    # The app allows the site in code as well; the settings' retention still holds for it.
    shop.app.site("demo", ["http://127.0.0.1:*", "http://localhost:*"])
    old = datetime.now(UTC) - timedelta(days=3)
    sites = {"demo": Site("demo", ("http://127.0.0.1:*",), audit_retention_days=2)}
    config = settings(
        tmp_path,
        audit=audit_url,
        sites=sites,
        audit_retention_days=365,
        audit_purge_interval=0.1,
    )
    async with running(shop.app, config) as server:
        audit = server.engine.audit
        await audit.record(entry_at(old, "old"), entry_at(old, "older"))
        async with widget(server) as visitor:
            card = await visitor.open_card("wipe disk")
            await visitor.decide(card)
            await visitor.update(card["card_id"], "done")
        for _ in range(50):
            actions = [r["action"] for r in await audit.rows()]
            if "old" not in actions:
                break
            await asyncio.sleep(0.1)
    assert "old" not in actions and "older" not in actions
    assert "wipe" in actions  # the young rows stay


def entry_at(ts: datetime, action: str) -> AuditEntry:
    return AuditEntry(
        ts=ts,
        site="demo",
        session_id="s",
        conversation_id="c",
        user_id="u",
        action=action,
        kind="write",
        status=AuditStatus.SUCCESS,
        params={},
    )
