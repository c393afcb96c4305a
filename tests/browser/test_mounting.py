"""signoff mounted at /chat inside a FastAPI app of the host's own, in headless Chromium:
the widget finds its socket under the prefix, and the dashboard's pages, forms, redirects
and cookies all stay under it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from playwright.async_api import Browser, WebSocket, expect

from signoff import mounted_lifespan
from signoff.demo import demo_app
from tests.browser.test_dashboard import PASSWORD
from tests.browser.test_widget import send
from tests.support import free_port, serving, settings

HOST_PAGE = """<!doctype html><html><body><h1>The host's shop</h1>
<script src="/chat/widget.js" data-site="demo" data-open="true" async></script>
</body></html>"""


@asynccontextmanager
async def host_app(tmp_path: Any, *, run_lifespan: bool = True) -> AsyncIterator[str]:
    """The host's FastAPI app with signoff mounted at /chat, served; its base URL."""
    chat = demo_app().asgi(settings(tmp_path))
    api = FastAPI(lifespan=mounted_lifespan(chat) if run_lifespan else None)

    @api.get("/")
    async def home() -> HTMLResponse:
        return HTMLResponse(HOST_PAGE)

    api.mount("/chat", chat)
    port = free_port()
    config = uvicorn.Config(
        api, host="127.0.0.1", port=port, ws="websockets-sansio", log_level="warning"
    )
    async with serving(config):
        if run_lifespan:
            accounts = chat.state.runtime.accounts
            await accounts.create_teammate("lena", PASSWORD, ["support-lead"])
        yield f"http://127.0.0.1:{port}"


async def test_the_widget_and_the_dashboard_work_under_the_mount_prefix(
    browser: Browser, tmp_path: Any
) -> None:
    async with host_app(tmp_path) as url:
        page = await browser.new_page()
        sockets: list[WebSocket] = []
        page.on("websocket", lambda socket: sockets.append(socket))
        await page.goto(url + "/")
        await expect(page.locator(".signoff-panel")).to_have_attribute("data-open", "true")
        await send(page, "cancel order 1001")
        card = page.locator(".signoff-card")
        await card.locator(".signoff-confirm").click()
        await expect(card).to_have_attribute("data-status", "done")
        assert [s.url for s in sockets] == [url.replace("http", "ws") + "/chat/ws"]

        team = await browser.new_page()
        await team.goto(url + "/chat/dashboard")
        await expect(team).to_have_url(url + "/chat/dashboard/login")
        await team.get_by_label("Name").fill("lena")
        await team.get_by_label("Password").fill(PASSWORD)
        await team.get_by_role("button", name="Log in").click()
        await expect(team).to_have_url(url + "/chat/dashboard")
        await expect(team.get_by_role("heading", name="Waiting")).to_be_visible()
        await team.get_by_role("link", name="Audit log").click()
        await expect(team).to_have_url(url + "/chat/dashboard/audit")
        await expect(team.locator("tbody tr").first).to_contain_text("cancel_order")
        cookies = await team.context.cookies()
        assert {c["path"] for c in cookies} == {"/chat/dashboard"}

        async with httpx.AsyncClient(base_url=url) as http:
            demo = await http.get("/chat/demo")
            assert 'src="/chat/widget.js"' in demo.text
            assert 'href="/chat/static/demo.css"' in demo.text


async def test_a_mount_without_signoffs_lifespan_says_what_to_do(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "signoff.web")
    async with host_app(tmp_path, run_lifespan=False) as url, httpx.AsyncClient() as http:
        for _ in range(2):
            answer = await http.get(url + "/chat/widget.js")
            assert answer.status_code == 503
            assert "mounted_lifespan(chat)" in answer.text
        assert (await http.get(url + "/")).status_code == 200  # the host's own pages work
    said = [r for r in caplog.records if "mounted_lifespan" in r.getMessage()]
    assert len(said) == 1  # once, not at every request
