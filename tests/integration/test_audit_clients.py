"""What the audit log keeps of whoever decided or tried to, on SQLite and PostgreSQL: a
user agent cut to a bounded length, and an address only when it is one.

Anyone can send an 8 KB User-Agent, and every refused attempt copies it into a row; behind
a trusted proxy the address is whatever ``X-Forwarded-For`` said (the test server trusts
127.0.0.1, as uvicorn does by default).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from signoff.core.deciders import MAX_USER_AGENT, Decider
from signoff.demo import demo_app
from tests.support import Server, running, settings, widget

ADMIN_KEY = "bootstrap-admin-key-0123456789abcdef"
HUGE_UA = "Mozilla/5.0 " + "A" * 8192
# A WebSocket handshake's header lines are capped lower, at about 8 KB.
LONG_UA = HUGE_UA[:4096]


@pytest.fixture
async def demo(tmp_path: Any, audit_url: str) -> AsyncIterator[Server]:
    async with running(demo_app(), settings(tmp_path, audit=audit_url)) as server:
        yield server


async def refused_rows(server: Server, card_id: str) -> list[dict[str, Any]]:
    await server.engine.drain()
    return await server.engine.audit.rows(card_id=card_id, status="refused")


async def test_a_huge_user_agent_is_cut_in_every_refused_row(demo: Server) -> None:
    async with widget(demo) as owner, widget(demo, user_agent_header=LONG_UA) as intruder:
        await owner.hello()
        await intruder.hello()
        await owner.say("refund 250 on order 1002")
        card = await owner.card("waiting")
        for _ in range(3):
            await intruder.decide(card)
            await intruder.error("forbidden")
        path = f"/api/v1/cards/{card['card_id']}/resume"
        async with httpx.AsyncClient(base_url=demo.url, headers={"User-Agent": HUGE_UA}) as http:
            answer = await http.post(
                path, json={"decision": "approve"}, headers={"Authorization": "Bearer nope"}
            )
        assert answer.status_code == 401
        rows = await refused_rows(demo, card["card_id"])
        assert len(rows) == 4
        assert [r["user_agent"] for r in rows] == [HUGE_UA[:MAX_USER_AGENT]] * 4


async def test_a_forwarded_address_is_kept_only_if_it_is_one(demo: Server) -> None:
    forwarded = {
        '=HYPERLINK("http://evil.example")': None,
        "fe80::1%=cmd": "fe80::1",
        "2001:DB8:0:0:0:0:0:1": "2001:db8::1",
        "203.0.113.9": "203.0.113.9",
    }
    async with widget(demo) as owner:
        await owner.hello()
        await owner.say("cancel order 1001")
        card = await owner.card("pending")
        for address in forwarded:
            headers = {"X-Forwarded-For": address}
            async with widget(demo, additional_headers=headers) as intruder:
                await intruder.hello()
                await intruder.decide(card)
                await intruder.error("forbidden")
        rows = await refused_rows(demo, card["card_id"])
        assert [r["ip"] for r in rows] == list(forwarded.values())


def test_a_decider_built_anywhere_keeps_a_bounded_user_agent() -> None:
    assert Decider("slack:U1", "192.0.2.1", HUGE_UA).user_agent == HUGE_UA[:MAX_USER_AGENT]
    assert Decider.at("user:1", ("192.0.2.1", None)).user_agent is None
