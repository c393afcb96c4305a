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
