"""A site owner's setup mistakes, in Chromium: the visitor reads a calm "unavailable", the
console names the cause and the fix, and the widget does not retry what cannot succeed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from signoff import sign_user_token
from signoff.config import Site
from signoff.demo import demo_app
from tests.browser.test_widget import host_page
from tests.support import SECRET, Server, running, settings

UNAVAILABLE = "Chat is unavailable right now."


async def watched_page(browser: Browser) -> tuple[Page, list[str], list[str]]:
    """A page recording its console errors and every WebSocket it opens."""
    page = await browser.new_page()
    errors: list[str] = []
    sockets: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("websocket", lambda ws: sockets.append(ws.url))
    return page, errors, sockets


async def shows_unavailable_and_stays_put(page: Page, sockets: list[str]) -> None:
    await expect(page.get_by_role("status")).to_have_text(UNAVAILABLE)
    await expect(page.get_by_role("textbox")).to_be_disabled()
    # Longer than the first reconnect delays: no second socket is opened.
    await asyncio.sleep(2.5)
    assert len(sockets) == 1


async def test_an_origin_no_site_lists_is_named_with_the_fix(
    browser: Browser, tmp_path: Path
) -> None:
    sites = {"demo": Site("demo", ("http://localhost:*",))}
    async with running(demo_app(), settings(tmp_path, sites=sites)) as server:
        host_page(server, "/shop", "{}")
        page, errors, sockets = await watched_page(browser)
        await page.goto(server.url + "/shop")
        await shows_unavailable_and_stays_put(page, sockets)
        origin = f"http://127.0.0.1:{server.port}"
        [error] = [e for e in errors if e.startswith("[signoff]")]
        assert f"this page's origin {origin} is not allowed for site 'demo'" in error
        assert "[sites.demo] origins" in error


async def test_an_origin_listed_for_another_site_is_named_with_the_fix(
    browser: Browser, tmp_path: Path
) -> None:
    sites = {
        "demo": Site("demo", ("http://localhost:*",)),
        "blog": Site("blog", ("http://127.0.0.1:*",)),
    }
    async with running(demo_app(), settings(tmp_path, sites=sites)) as server:
        host_page(server, "/shop", "{}")
        page, errors, sockets = await watched_page(browser)
        await page.goto(server.url + "/shop")
        await shows_unavailable_and_stays_put(page, sockets)
        assert [e for e in errors if e.startswith("[signoff]")] == [
            f"[signoff] the chat is off: this page's origin http://127.0.0.1:{server.port} "
            "is not allowed for site 'demo'. Add it to [sites.demo] origins in the signoff "
            "server's configuration (docs/embedding.md#allowed-origins)."
        ]
        # The visitor saw no developer words.
        assert await page.get_by_text("not allowed").count() == 0


async def test_a_site_the_server_does_not_have_is_named_with_the_fix(
    browser: Browser, demo: Server
) -> None:
    host_page(demo, "/shop", '{site: "shop"}')
    page, errors, sockets = await watched_page(browser)
    await page.goto(demo.url + "/shop")
    await shows_unavailable_and_stays_put(page, sockets)
    [error] = [e for e in errors if e.startswith("[signoff]")]
    assert "the signoff server has no site 'shop'" in error
    assert "Set data-site to one of its sites" in error


async def test_a_refused_user_token_stops_until_the_page_gives_a_new_one(
    browser: Browser, demo: Server
) -> None:
    host_page(demo, "/account", '{userToken: "not-a-token"}')
    page, errors, sockets = await watched_page(browser)
    await page.goto(demo.url + "/account")
    await shows_unavailable_and_stays_put(page, sockets)
    [error] = [e for e in errors if e.startswith("[signoff]")]
    assert "refused this page's user token" in error
    assert "Signoff.init({userToken})" in error

    token = sign_user_token(SECRET, "alice", 600)
    await page.evaluate("token => Signoff.init({userToken: token})", token)
    await expect(page.get_by_role("status")).to_be_hidden()
    await expect(page.get_by_role("textbox")).to_be_enabled()
    await page.get_by_role("textbox").fill("list orders")
    await page.get_by_role("textbox").press("Enter")
    await expect(page.get_by_text("#1001")).to_be_visible()
    assert len(sockets) == 2
