"""The plain HTTP routes: widget, demo page, health and metrics."""

from __future__ import annotations

from typing import Any

import httpx

from signoff.config import Site
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
            metrics = (await http.get("/metrics")).text
            assert "signoff_websocket_connections" in metrics
            assert 'signoff_frames_received_total{type="ping"}' in metrics


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

        async def samples() -> list[float]:
            async with httpx.AsyncClient() as http:
                text = (await http.get(server.url + "/metrics")).text
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
