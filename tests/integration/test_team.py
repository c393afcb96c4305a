"""Cards that wait on teammates: levels in order, roles, one decision per level, the turn going on.

Decisions go through the engine here; the dashboard, Slack and API tests drive the same
path over HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from signoff import Signoff, team
from signoff.config import Site
from signoff.core.closing import WITHDRAWN
from signoff.core.frames import ProtocolError
from signoff.core.teammates import Channel, Teammate, Verdict
from signoff.engine import ActionContext
from signoff.engine.turns import NOT_WHILE_WAITING
from tests.support import EchoCallBot, Server, audit_statuses, running, settings, widget

LEAD = Teammate("lena", frozenset({"support-lead"}), Channel.DASHBOARD)
OTHER_LEAD = Teammate("omar", frozenset({"support-lead"}), Channel.API)
FINANCE = Teammate("fred", frozenset({"finance"}), Channel.SLACK)
BOTH = Teammate("bea", frozenset({"support-lead", "finance"}), Channel.DASHBOARD)


def chain_app(runs: list[dict[str, Any]], timeout: float = 600.0) -> Signoff:
    app = Signoff(bot=EchoCallBot(calls=("refund",)))

    @app.action(kind="write", approver=team("support-lead", "finance"), timeout=timeout)
    async def refund(ctx: ActionContext, target: str) -> dict[str, Any]:
        """Refund money to the customer."""
        runs.append({"amount": target, "decided_by": ctx.decided_by})
        return {"refunded": target}

    return app


@pytest.fixture
async def server(each_store: str, tmp_path: Any) -> AsyncIterator[Server]:
    runs: list[dict[str, Any]] = []
    async with running(chain_app(runs), settings(tmp_path)) as server:
        server.runs = runs  # type: ignore[attr-defined]
        yield server


async def decide(
    server: Server, card_id: str, verdict: Verdict, who: Teammate, level: int | None = None
) -> Any:
    return await server.engine.team_decide(card_id, verdict, who, reason=None, level=level)


async def test_levels_are_decided_in_order_and_the_turn_goes_on(server: Server) -> None:
    async with widget(server) as w:
        await w.hello()
        await w.say("refund 250")
        card = await w.card("waiting")
        assert (card["level"], card["role"], card["levels"]) == (
            1,
            "support-lead",
            ["support-lead", "finance"],
        )

        # Finance cannot take level 1, and the visitor cannot decide at all.
        with pytest.raises(ProtocolError) as refused:
            await decide(server, card["card_id"], Verdict.APPROVE, FINANCE)
        assert refused.value.code == "forbidden"

        moved = await decide(server, card["card_id"], Verdict.APPROVE, LEAD)
        assert (moved.status, moved.level, moved.role) == ("waiting", 2, "finance")
        update = await w.update(card["card_id"], "waiting")
        assert (
            update["level"],
            update["role"],
            update.get("decided_by"),
        ) == (2, "finance", None)
        assert server.runs == []  # type: ignore[attr-defined]

        approved = await decide(server, card["card_id"], Verdict.APPROVE, FINANCE)
        assert approved.status == "approved"
        done = await w.update(card["card_id"], "done")
        assert done["decided_by"] == "teammate"  # names stay with the team
        await w.bot_says("refund")

    assert server.runs == [{"amount": "250", "decided_by": "teammate:fred"}]  # type: ignore[attr-defined]
    stored = await server.engine.store.get_card(card["card_id"])
    assert [(a["level"], a["role"], a["decision"], a["by"]) for a in stored.approvals] == [
        (1, "support-lead", "approve", "teammate:lena"),
        (2, "finance", "approve", "teammate:fred"),
    ]
    assert await audit_statuses(server, "refund") == [
        "pending_confirmation",  # the card opens on level 1
        "refused",
        "pending_confirmation",  # level 1 approved, level 2 waits
        "success",
    ]


async def test_a_rejection_at_any_level_ends_the_card(server: Server) -> None:
    async with widget(server) as w:
        await w.hello()
        await w.say("refund 250")
        card = await w.card("waiting")
        await decide(server, card["card_id"], Verdict.APPROVE, LEAD)
        rejected = await server.engine.team_decide(
            card["card_id"], Verdict.REJECT, FINANCE, reason="over the monthly limit"
        )
        assert (rejected.status, rejected.reason) == ("rejected", "over the monthly limit")
        update = await w.update(card["card_id"], "rejected")
        assert "reason" not in update  # the team's reason is for the team
        told = await w.bot_says("a teammate rejected it")
        assert "monthly" not in told["text"]  # and not the bot's, unless the site says so
        with pytest.raises(ProtocolError) as late:
            await decide(server, card["card_id"], Verdict.APPROVE, FINANCE)
        assert late.value.code == "already_decided"
    assert server.runs == []  # type: ignore[attr-defined]
    assert await audit_statuses(server, "refund") == [
        "pending_confirmation",
        "pending_confirmation",
        "rejected",
    ]


async def test_a_site_may_let_the_bot_hear_why_a_teammate_rejected(
    each_store: str, tmp_path: Any
) -> None:
    sites = {"demo": Site("demo", ("http://127.0.0.1:*",), team_reasons_to_bot=True)}
    app, config = chain_app([]), settings(tmp_path, sites=sites)
    async with running(app, config) as server, widget(server) as w:
        await w.hello()
        await w.say("refund 250")
        card = await w.card("waiting")
        await server.engine.team_decide(
            card["card_id"], Verdict.REJECT, LEAD, reason="over the monthly limit"
        )
        told = await w.bot_says("a teammate rejected it")
        # So the model can offer something else instead of asking again.
        assert '"why": "over the monthly limit"' in told["text"]
        update = await w.update(card["card_id"], "rejected")
        assert "reason" not in update  # the card the visitor sees is as before


async def test_the_visitor_withdraws_a_waiting_request_and_a_late_approval_is_refused(
    server: Server,
) -> None:
    async with widget(server) as w:
        await w.hello()
        await w.say("refund 250")
        card = await w.card("waiting")
        await decide(server, card["card_id"], Verdict.APPROVE, LEAD)  # level 1 of 2
        # The visitor can take it back, never approve it.
        await w.decide(card, "confirm")
        refused = await w.error("forbidden")
        assert refused["message"] == "this card waits for a teammate"
        await w.decide(card, "cancel")
        update = await w.update(card["card_id"], "cancelled")
        assert update["reason"] == WITHDRAWN
        await w.bot_says(WITHDRAWN)  # the bot is told why
        with pytest.raises(ProtocolError) as late:
            await decide(server, card["card_id"], Verdict.APPROVE, FINANCE)
        assert late.value.code == "already_decided"
    assert server.runs == []  # type: ignore[attr-defined]
    rows = await server.engine.audit.rows(action="refund")
    assert [(r["status"], r["error"]) for r in rows][-2:] == [
        ("refused", "visitor decision on a teammate's card"),
        ("cancelled", WITHDRAWN),
    ]
    assert rows[-1]["decided_by"].startswith("user:")


async def test_one_teammate_decides_one_level_only(server: Server) -> None:
    async with widget(server) as w:
        await w.hello()
        await w.say("refund 250")
        card = await w.card("waiting")
        await decide(server, card["card_id"], Verdict.APPROVE, BOTH)
        with pytest.raises(ProtocolError) as again:
            await decide(server, card["card_id"], Verdict.APPROVE, BOTH)
        assert again.value.code == "forbidden"
        assert "earlier level" in again.value.message
    stored = await server.engine.store.get_card(card["card_id"])
    assert (stored.status, stored.level) == ("waiting", 2)


async def test_teammates_racing_on_one_level_move_it_once(server: Server) -> None:
    async with widget(server) as w:
        await w.hello()
        await w.say("refund 250")
        card = await w.card("waiting")
        leads = [Teammate(f"lead{i}", frozenset({"support-lead"}), Channel.API) for i in range(6)]
        outcomes = await asyncio.gather(
            *(decide(server, card["card_id"], Verdict.APPROVE, lead, level=1) for lead in leads),
            return_exceptions=True,
        )
        won = [o for o in outcomes if not isinstance(o, BaseException)]
        lost = [o for o in outcomes if isinstance(o, ProtocolError)]
        assert len(won) == 1 and len(lost) == 5
        assert {o.code for o in lost} == {"already_decided"}
        stored = await server.engine.store.get_card(card["card_id"])
        assert (stored.level, len(stored.approvals)) == (2, 1)

        finals = await asyncio.gather(
            *(decide(server, card["card_id"], Verdict.APPROVE, f) for f in (FINANCE, BOTH)),
            decide(server, card["card_id"], Verdict.REJECT, BOTH),
            return_exceptions=True,
        )
        assert sum(not isinstance(o, BaseException) for o in finals) == 1
        await w.expect(lambda f: f["type"] == "card.update" and f["status"] in {"done", "rejected"})
    await server.engine.drain()
    assert len(server.runs) <= 1  # type: ignore[attr-defined]


async def test_a_team_card_never_outlives_its_timeout(each_store: str, tmp_path: Any) -> None:
    runs: list[dict[str, Any]] = []
    app = chain_app(runs, timeout=0.5)
    async with running(app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("refund 250")
        card = await w.card("waiting")
        await w.update(card["card_id"], "expired")
        with pytest.raises(ProtocolError) as late:
            await decide(server, card["card_id"], Verdict.APPROVE, LEAD)
        assert late.value.code == "already_decided"
        await w.bot_says("expired before anyone decided")
    assert runs == []


async def test_visitor_cards_are_not_the_teams(demo: Server) -> None:
    async with widget(demo) as w:
        await w.hello()
        card = await w.open_card("cancel order 1001")
        with pytest.raises(ProtocolError) as refused:
            await decide(demo, card["card_id"], Verdict.APPROVE, LEAD)
        assert refused.value.code == "not_found"
        stored = await demo.engine.store.get_card(card["card_id"])
        assert stored.status == "pending"


async def test_while_a_card_waits_only_reads_run_aside(each_store: str, tmp_path: Any) -> None:
    runs: list[dict[str, Any]] = []
    app = chain_app(runs)
    app.bot = EchoCallBot(calls=("refund", "note"))

    @app.action(kind="write", confirm=False)
    async def note(ctx: ActionContext, target: str) -> dict[str, Any]:
        runs.append({"note": target})
        return {}

    async with running(app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("refund 250")
        await w.card("waiting")
        # A write that needs no card would run now and be forgotten with the aside.
        await w.say("note x")
        await w.bot_says(NOT_WHILE_WAITING)
    assert runs == []
    rows = await server.engine.audit.rows(action="note")
    assert [(r["status"], r["error"]) for r in rows] == [("refused", NOT_WHILE_WAITING)]
