"""The plain HTTP routes: widget, demo page, health and metrics (for a metrics key only)."""

from __future__ import annotations

import asyncio
import logging
from platform import python_version
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import signoff
from signoff.config import Site
from signoff.web.measured import METHODS
from tests.support import CountingShop, Server, running, settings, widget


async def test_widget_demo_health_and_metrics(demo: Server) -> None:
    async with widget(demo) as w:
        await w.hello()
        await w.send({"type": "ping"})
        await w.expect(lambda f: f["type"] == "pong")
        async with httpx.AsyncClient(base_url=demo.url) as http:
            js = await http.get("/widget.js")
            assert js.headers["content-type"].startswith("text/javascript")
            assert (await http.get("/widget.css")).headers["content-type"].startswith("text/css")
            page = await http.get("/demo")
            assert '<script src="/widget.js" data-site="demo"' in page.text
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert 'rel="icon" href="/static/favicon.svg"' in page.text
            icon = await http.get("/favicon.ico", follow_redirects=True)
            assert (icon.status_code, icon.headers["content-type"]) == (200, "image/svg+xml")
            metrics = (await http.get("/metrics", headers=await monitor(demo))).text
            assert "signoff_websocket_connections" in metrics
            assert 'signoff_frames_received_total{type="ping"}' in metrics


async def test_metrics_time_requests_actions_and_the_bot_and_count_the_teams_queue(
    demo: Server,
) -> None:
    async with widget(demo) as w:
        card = await w.open_card("cancel order 1001")
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.say("refund 250 on order 1002")
        waiting = await w.card("waiting")
    async with httpx.AsyncClient(base_url=demo.url) as http:
        await http.get("/dashboard/cards/" + waiting["card_id"])  # to the login page
        await http.get("/wp-login.php")
        await asyncio.sleep(1.1)  # the card has waited a second
        text = (await http.get("/metrics", headers=await monitor(demo))).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    seen = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return seen.get((name, tuple(sorted(labels.items()))), 0.0)

    http_count = "signoff_http_request_duration_seconds_count"
    card_route = {"route": "/dashboard/cards/{card_id}", "method": "GET", "status": "303"}
    assert value(http_count, **card_route) >= 1
    assert value(http_count, route="unmatched", method="GET", status="404") >= 1
    assert (
        value("signoff_action_run_duration_seconds_count", action="cancel_order", outcome="ok") >= 1
    )
    assert value("signoff_bot_step_duration_seconds_count", outcome="ok") >= 3
    assert value("signoff_team_cards_waiting") == 1  # this server's store, read at the scrape
    assert 1 <= value("signoff_team_card_oldest_wait_seconds") < 60
    assert value("signoff_build_info", version=signoff.__version__, python=python_version()) == 1


async def monitor(server: Server) -> dict[str, str]:
    """The headers of a monitoring system holding a key with the metrics role."""
    key = await server.app.state.runtime.accounts.create_key("prometheus", ["metrics"])
    return {"Authorization": f"Bearer {key}"}


async def test_metrics_are_for_a_metrics_key_and_that_key_reads_nothing_else(
    demo: Server,
) -> None:
    accounts = demo.app.state.runtime.accounts
    lead = await accounts.create_key("refund-desk", ["support-lead"])
    scraper = await monitor(demo)
    async with httpx.AsyncClient(base_url=demo.url) as http:
        anyone = await http.get("/metrics")
        assert (anyone.status_code, anyone.headers["www-authenticate"]) == (
            401,
            'Bearer realm="signoff"',
        )
        assert "signoff_" not in anyone.text
        forged = await http.get("/metrics", headers={"Authorization": "Bearer sok_0_nope"})
        assert forged.status_code == 401
        wrong_role = await http.get("/metrics", headers={"Authorization": f"Bearer {lead}"})
        assert (wrong_role.status_code, wrong_role.text) == (
            403,
            "this needs a key with the role metrics",
        )
        assert (await http.get("/metrics", headers=scraper)).status_code == 200
        for path in ("/api/v1/cards", "/api/v1/cards/c_1", "/api/v1/audit", "/api/v1/keys"):
            answer = await http.get(path, headers=scraper)
            assert answer.status_code == 403, path


async def test_no_demo_page_without_a_demo_site(tmp_path: Any) -> None:
    config = settings(tmp_path, sites={"shop": Site("shop", ("https://shop.example",))})
    async with running(CountingShop().app, config) as server, httpx.AsyncClient() as http:
        assert (await http.get(server.url + "/demo")).status_code == 404


def _sample(metrics: str, name: str) -> float:
    """The value of one sample line, 0 when absent."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def test_metrics_count_cards_opened_and_closed(tmp_path: Any) -> None:
    async with running(CountingShop().app, settings(tmp_path)) as server:
        headers = await monitor(server)

        async def samples() -> list[float]:
            async with httpx.AsyncClient() as http:
                text = (await http.get(server.url + "/metrics", headers=headers)).text
            return [_sample(text, name) for name in (OPENED, DONE, CANCELLED)]

        before = await samples()
        async with widget(server) as w:
            card = await w.open_card("wipe disk")
            await w.decide(card)
            await w.update(card["card_id"], "done")
            card = await w.open_card("wipe tape")
            await w.decide(card, "cancel")
            await w.update(card["card_id"], "cancelled")
        after = await samples()
        assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1]


OPENED = 'signoff_cards_opened_total{approver="user"}'
DONE = 'signoff_cards_closed_total{status="done"}'
CANCELLED = 'signoff_cards_closed_total{status="cancelled"}'


async def test_the_memory_store_under_gunicorn_is_warned_of(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/23.0.0")  # as gunicorn's arbiter sets it
    with caplog.at_level(logging.WARNING, "signoff.web"):
        async with running(CountingShop().app, settings(tmp_path, store="memory://")):
            pass
    said = [r.getMessage() for r in caplog.records if "gunicorn/23.0.0" in r.getMessage()]
    assert len(said) == 1 and "SIGNOFF_STORE=redis://" in said[0]


async def test_what_a_client_sends_never_becomes_a_metrics_label(demo: Server) -> None:
    """A scanner's paths and methods would make a histogram per request: the labels are
    route templates and the standard methods only."""
    async with httpx.AsyncClient(base_url=demo.url) as http:
        for i in range(20):
            await http.get(f"/api/v1/scan-{i}/admin")
            await http.get(f"/static/scan-{i}.php")
            await http.get(f"/dashboard/cards/dashboard-scan-{i}")  # an id like the path
            await http.get(f"/scan-{i}")
            await http.request(("PROPFIND", "MKCOL", "PURGE")[i % 3], "/healthz")
        text = (await http.get("/metrics", headers=await monitor(demo))).text
    labels = [
        sample.labels
        for family in text_string_to_metric_families(text)
        if family.name == "signoff_http_request_duration_seconds"
        for sample in family.samples
    ]
    assert labels and not any("scan" in value.lower() for s in labels for value in s.values())
    routes = {s["route"] for s in labels}
    assert {"/api/v1/{path}", "/static/{path}", "/dashboard/cards/{card_id}", "unmatched"} <= routes
    # No method a client made up (the registry is the process's: earlier tests' too).
    assert {s["method"] for s in labels} <= METHODS | {"other"}
    assert "other" in {s["method"] for s in labels}


async def test_a_crowd_asking_for_health_costs_one_check_of_each_service(
    demo: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/healthz answers anyone and queries Redis and the audit database: a flood of it
    must not become a flood of queries."""
    runtime = demo.app.state.runtime
    pings = []
    ping = runtime.audit.ping

    async def counted() -> None:
        pings.append(1)
        await ping()

    monkeypatch.setattr(runtime.audit, "ping", counted)
    async with httpx.AsyncClient(base_url=demo.url) as http:
        answers = await asyncio.gather(*(http.get("/healthz") for _ in range(50)))
    assert {a.json()["status"] for a in answers} == {"ok"}
    assert len(pings) <= 2  # one, or two if the second of reuse ran out meanwhile
