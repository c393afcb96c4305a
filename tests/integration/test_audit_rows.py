"""Every demo flow leaves exactly the right audit rows, on SQLite and PostgreSQL.

Each row says who decided (``auto``, ``user:<id>``, ``teammate:<name>``), on which
approval level, and from which address and browser; undecided ends (expiry) name no one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from signoff.demo import demo_app
from tests.integration.test_team import chain_app
from tests.support import Server, Widget, approve_over_api, running, settings, widget

ADMIN_KEY = "bootstrap-admin-key-0123456789abcdef"
VISITOR_UA = "Mozilla/5.0 (visitor's browser)"
LEAD_UA = "refund-desk/2.1"
LOCAL = "127.0.0.1"

Row = tuple[str, str, str | None, int | None, str | None, str | None]


@pytest.fixture
async def demo(tmp_path: Any, audit_url: str) -> AsyncIterator[Server]:
    config = settings(tmp_path, audit=audit_url, admin_key=ADMIN_KEY)
    async with running(demo_app(), config) as server:
        yield server


@asynccontextmanager
async def visitor(server: Server, user_agent: str = VISITOR_UA) -> AsyncIterator[Widget]:
    async with widget(server, user_agent_header=user_agent) as w:
        await w.hello()
        yield w


async def rows_of(server: Server, w: Widget) -> list[Row]:
    """The session's rows: action, status, decided_by, level, ip, user_agent."""
    await server.engine.drain()
    rows = await server.engine.audit.rows(session_id=w.welcome["session_id"])
    return [
        (r["action"], r["status"], r["decided_by"], r["level"], r["ip"], r["user_agent"])
        for r in rows
    ]


def by_visitor(w: Widget) -> str:
    return f"user:{w.welcome['user_id']}"


def no_ip_in_frames(w: Widget) -> None:
    """The decider's address and browser stay on the server."""
    for frame in w.frames:
        assert VISITOR_UA not in str(frame) and LOCAL not in str(frame)


async def test_list_orders_is_one_auto_row(demo: Server) -> None:
    async with visitor(demo) as w:
        await w.say("list orders")
        await w.bot_says("Here are your orders")
        assert await rows_of(demo, w) == [("list_orders", "success", "auto", None, None, None)]


async def test_a_confirmed_card_records_the_wait_then_the_visitors_run(demo: Server) -> None:
    async with visitor(demo) as w:
        await w.say("cancel order 1001")
        card = await w.card("pending")
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says("cancelled")
        me = by_visitor(w)
        assert await rows_of(demo, w) == [
            ("get_order", "success", "auto", None, None, None),
            ("cancel_order", "pending_confirmation", None, None, None, None),
            ("cancel_order", "success", me, None, LOCAL, VISITOR_UA),
        ]
        [ran] = await demo.engine.audit.rows(card_id=card["card_id"], status="success")
        assert ran["duration_ms"] >= 0
        assert ran["result"] == {"order_id": 1001, "status": "cancelled"}
        assert ran["response"] is None  # the demo's actions make no HTTP requests
        no_ip_in_frames(w)


async def test_a_cancelled_card_records_the_visitors_no(demo: Server) -> None:
    async with visitor(demo) as w:
        await w.say("cancel order 1001")
        card = await w.card("pending")
        await w.decide(card, "cancel")
        await w.update(card["card_id"], "cancelled")
        await w.bot_says("")
        assert (await rows_of(demo, w))[1:] == [
            ("cancel_order", "pending_confirmation", None, None, None, None),
            ("cancel_order", "cancelled", by_visitor(w), None, LOCAL, VISITOR_UA),
        ]


async def test_a_chain_has_one_row_per_call_at_each_step(demo: Server) -> None:
    async with visitor(demo) as w:
        await w.say("cancel orders 1001 1002 1003")
        card = await w.card("pending")
        await w.decide(card)
        await w.update(card["card_id"], "done")
        rows = await rows_of(demo, w)
        me = by_visitor(w)
        assert rows == [
            *[("get_order", "success", "auto", None, None, None)] * 3,
            *[("cancel_order", "pending_confirmation", None, None, None, None)] * 3,
            *[("cancel_order", "success", me, None, LOCAL, VISITOR_UA)] * 3,
        ]
        ran = await demo.engine.audit.rows(card_id=card["card_id"], status="success")
        assert [r["params"]["order_id"] for r in ran] == [1001, 1002, 1003]


async def test_a_failed_chain_records_the_failure_and_the_skipped_rest(demo: Server) -> None:
    async with visitor(demo) as w:
        await w.say("cancel orders 1001 1004 1003")
        card = await w.card("pending")
        await w.decide(card)
        await w.update(card["card_id"], "failed")
        me = by_visitor(w)
        assert (await rows_of(demo, w))[6:] == [
            ("cancel_order", "success", me, None, LOCAL, VISITOR_UA),
            ("cancel_order", "failed", me, None, LOCAL, VISITOR_UA),
            ("cancel_order", "skipped", me, None, LOCAL, VISITOR_UA),
        ]


async def test_delete_spam_records_the_read_and_the_card(demo: Server) -> None:
    async with visitor(demo) as w:
        await w.say("delete spam")
        card = await w.card("pending")
        await w.decide(card)
        await w.update(card["card_id"], "done")
        assert await rows_of(demo, w) == [
            ("list_spam", "success", "auto", None, None, None),
            ("delete_spam", "pending_confirmation", None, None, None, None),
            ("delete_spam", "success", by_visitor(w), None, LOCAL, VISITOR_UA),
        ]


async def test_a_small_refund_is_the_visitors(demo: Server) -> None:
    async with visitor(demo) as w:
        await w.say("refund 20 on order 1002")
        card = await w.card("pending")
        await w.decide(card)
        await w.update(card["card_id"], "done")
        assert await rows_of(demo, w) == [
            ("refund", "pending_confirmation", None, None, None, None),
            ("refund", "success", by_visitor(w), None, LOCAL, VISITOR_UA),
        ]


async def test_an_escalated_refund_records_the_teammate_their_level_and_client(
    demo: Server,
) -> None:
    key = await demo.app.state.runtime.accounts.create_key("refund-desk", ["support-lead"])
    async with visitor(demo) as w:
        await w.say("refund 250 on order 1002")
        card = await w.card("waiting")
        # The visitor may not decide it: refused, with their address.
        await w.decide(card)
        await w.error("forbidden")
        async with httpx.AsyncClient(base_url=demo.url, headers={"User-Agent": LEAD_UA}) as http:
            answer = await http.post(
                f"/api/v1/cards/{card['card_id']}/resume",
                json={"decision": "approve"},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert answer.status_code == 200
        await w.update(card["card_id"], "done")
        lead = "teammate:key:refund-desk"
        assert await rows_of(demo, w) == [
            ("refund", "pending_confirmation", None, None, None, None),
            ("refund", "refused", by_visitor(w), None, LOCAL, VISITOR_UA),
            ("refund", "success", lead, 1, LOCAL, LEAD_UA),
        ]
        no_ip_in_frames(w)


async def test_refusals_at_the_door_and_by_role_carry_the_callers_client(demo: Server) -> None:
    finance = await demo.app.state.runtime.accounts.create_key("finance-bot", ["finance"])
    async with visitor(demo) as w:
        await w.say("refund 250 on order 1002")
        card = await w.card("waiting")
        path = f"/api/v1/cards/{card['card_id']}/resume"
        async with httpx.AsyncClient(base_url=demo.url, headers={"User-Agent": LEAD_UA}) as http:
            bad_key = await http.post(
                path, json={"decision": "approve"}, headers={"Authorization": "Bearer nope"}
            )
            wrong_role = await http.post(
                path, json={"decision": "approve"}, headers={"Authorization": f"Bearer {finance}"}
            )
        assert (bad_key.status_code, wrong_role.status_code) == (401, 403)
        assert (await rows_of(demo, w))[1:] == [
            ("refund", "refused", "api:unauthenticated", None, LOCAL, LEAD_UA),
            ("refund", "refused", "teammate:key:finance-bot", 1, LOCAL, LEAD_UA),
        ]
        assert (await demo.engine.store.get_card(card["card_id"])).status == "waiting"


async def test_a_teammates_rejection_records_them(demo: Server) -> None:
    key = await demo.app.state.runtime.accounts.create_key("refund-desk", ["support-lead"])
    async with visitor(demo) as w:
        await w.say("refund 250 on order 1002")
        card = await w.card("waiting")
        async with httpx.AsyncClient(base_url=demo.url, headers={"User-Agent": LEAD_UA}) as http:
            answer = await http.post(
                f"/api/v1/cards/{card['card_id']}/resume",
                json={"decision": "reject"},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert answer.status_code == 200
        await w.update(card["card_id"], "rejected")
        assert (await rows_of(demo, w))[1:] == [
            ("refund", "rejected", "teammate:key:refund-desk", 1, LOCAL, LEAD_UA),
        ]


async def test_a_decision_from_another_session_is_refused_with_its_client(demo: Server) -> None:
    async with visitor(demo) as owner, visitor(demo, "Intruder/1.0") as intruder:
        await owner.say("cancel order 1001")
        card = await owner.card("pending")
        await intruder.decide(card)
        await intruder.error("forbidden")
        assert (await rows_of(demo, owner))[1:] == [
            ("cancel_order", "pending_confirmation", None, None, None, None),
            ("cancel_order", "refused", by_visitor(intruder), None, LOCAL, "Intruder/1.0"),
        ]
        assert (await demo.engine.store.get_card(card["card_id"])).status == "pending"


async def test_a_new_message_withdraws_the_open_card_as_the_visitors_cancel(demo: Server) -> None:
    async with visitor(demo) as w:
        await w.say("cancel order 1001")
        card = await w.card("pending")
        await w.say("list orders")
        await w.update(card["card_id"], "cancelled")
        await w.bot_says("Here are your orders")
        assert (await rows_of(demo, w))[1:] == [
            ("cancel_order", "pending_confirmation", None, None, None, None),
            ("cancel_order", "cancelled", by_visitor(w), None, LOCAL, VISITOR_UA),
            ("list_orders", "success", "auto", None, None, None),
        ]


async def test_an_expired_card_names_no_decider(tmp_path: Any, audit_url: str) -> None:
    # A short session: its card's deadline passes while nobody decides.
    config = settings(tmp_path, audit=audit_url, session_ttl=1.0, sweep_interval=0.1)
    async with running(demo_app(), config) as server, visitor(server) as w:
        await w.say("refund 20 on order 1002")
        card = await w.card("pending")
        await w.update(card["card_id"], "expired")
        assert await rows_of(server, w) == [
            ("refund", "pending_confirmation", None, None, None, None),
            ("refund", "expired", None, None, None, None),
        ]


async def test_each_level_of_a_team_chain_is_its_own_row(tmp_path: Any, audit_url: str) -> None:
    runs: list[dict[str, Any]] = []
    config = settings(tmp_path, audit=audit_url)
    async with running(chain_app(runs), config) as server:
        accounts = server.app.state.runtime.accounts
        lead = await accounts.create_key("lead-bot", ["support-lead"])
        finance = await accounts.create_key("finance-bot", ["finance"])
        async with visitor(server) as w:
            await w.say("refund 250")
            card = await w.card("waiting")
            assert (await approve_over_api(server.url, card["card_id"], lead)).status_code == 200
            await w.update(card["card_id"], "waiting")
            assert (await approve_over_api(server.url, card["card_id"], finance)).status_code == 200
            await w.update(card["card_id"], "done")
            rows = await rows_of(server, w)
    httpx_ua = rows[-1][5]
    assert httpx_ua is not None and httpx_ua.startswith("python-httpx/")
    assert rows == [
        ("refund", "pending_confirmation", None, None, None, None),
        ("refund", "pending_confirmation", "teammate:key:lead-bot", 1, LOCAL, httpx_ua),
        ("refund", "success", "teammate:key:finance-bot", 2, LOCAL, httpx_ua),
    ]


async def test_a_malformed_decision_is_refused_on_record_and_decides_nothing(
    demo: Server,
) -> None:
    async with visitor(demo) as w:
        await w.say("cancel order 1001")
        card = await w.card("pending")
        # An extra field is how a tampered client would try to add an argument.
        await w.decide(card, args={"order_id": 1002})
        assert (await w.error("bad_frame"))["message"] == "unexpected field 'args'"
        await w.send({"type": "decision", "card_id": "card_nosuch", "decision": "yes"})
        await w.error("bad_frame")
        rows = await rows_of(demo, w)
        assert rows[-1] == ("cancel_order", "refused", by_visitor(w), None, LOCAL, VISITOR_UA)
        [refused] = await demo.engine.audit.rows(card_id=card["card_id"], status="refused")
        assert refused["error"] == "socket: unexpected field 'args'"
        assert refused["params"]["order_id"] == 1001  # the card's own, not the frame's
        await w.decide(card)  # the card still waits for a real decision
        await w.update(card["card_id"], "done")
