"""Take the docs' pictures in headless Chromium: docs/widget.png (the demo page with a
confirmation card), docs/dashboard.png (a refund waiting for a teammate) and
docs/audit.png (the audit log after a few cards).

Run: .venv/bin/python tools/screenshot.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.chromium import launch  # noqa: E402
from signoff.demo import demo_app, demo_site  # noqa: E402
from tests.support import Server, running, settings  # noqa: E402

DOCS = ROOT / "docs"
PASSWORD = "correct horse battery"


async def say(page: Page, text: str) -> None:
    field = page.locator(".signoff-input")
    await field.fill(text)
    await field.press("Enter")


async def settle(page: Page) -> None:
    await page.wait_for_timeout(400)  # let the entry animations end


async def widget(browser: Browser, server: Server) -> Page:
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    await page.goto(server.url + "/demo")
    await say(page, "cancel order 1001")
    await page.locator(".signoff-confirm").wait_for()
    await settle(page)
    await page.screenshot(path=str(DOCS / "widget.png"))
    return page


async def dashboard(browser: Browser, server: Server, visitor: Page) -> Page:
    await server.app.state.runtime.accounts.create_teammate("lead", PASSWORD, ["support-lead"])
    await visitor.locator(".signoff-confirm").click()
    await visitor.get_by_text("Done: order #1001 cancelled.").wait_for()
    await say(visitor, "refund 250 on order 1002")
    await visitor.locator('.signoff-card[data-status="waiting"]').wait_for()
    page = await browser.new_page(viewport={"width": 1100, "height": 760})
    await page.goto(server.url + "/dashboard/login")
    await page.get_by_label("Name").fill("lead")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("link", name="Refund").click()
    await page.get_by_role("heading", name="Exactly what runs").wait_for()
    await page.screenshot(path=str(DOCS / "dashboard.png"))
    return page


async def audit(visitor: Page, teammate: Page, server: Server) -> None:
    await teammate.get_by_role("button", name="Approve").click()
    await visitor.locator('.signoff-card[data-status="done"]').nth(1).wait_for()
    await say(visitor, "refund 20 on order 1002")
    await visitor.get_by_role("button", name="Not now").click()
    await visitor.locator('.signoff-card[data-status="cancelled"]').wait_for()
    await server.engine.drain()
    await teammate.set_viewport_size({"width": 1366, "height": 900})
    await teammate.goto(server.url + "/dashboard/audit")
    await teammate.locator(".audit-row").first.wait_for()
    await settle(teammate)
    await teammate.screenshot(path=str(DOCS / "audit.png"), full_page=True)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with running(demo_app(), settings(tmp)) as server, async_playwright() as pw:
            # The demo as `signoff demo` serves it: its greeting and things to try.
            server.app.state.runtime.sites["demo"] = demo_site("127.0.0.1", server.port)
            browser = await launch(pw)
            visitor = await widget(browser, server)
            teammate = await dashboard(browser, server, visitor)
            await audit(visitor, teammate, server)
            await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
