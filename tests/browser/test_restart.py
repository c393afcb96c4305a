"""A server that keeps sessions in memory restarts under an open page, in Chromium."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from signoff.demo import demo_app
from tests.browser.test_widget import send
from tests.support import free_port, running, settings


async def test_the_widget_says_the_chat_started_over_and_goes_on(
    browser: Browser, tmp_path: Path
) -> None:
    port = free_port()
    config = settings(tmp_path)
    page = await browser.new_page()
    async with running(demo_app(), config, port=port) as server:
        await page.goto(server.url + "/demo")
        await send(page, "list orders")
        await expect(page.get_by_text("Here are your orders")).to_be_visible()
    await expect(page.get_by_role("status")).to_have_text("Reconnecting…")

    async with running(demo_app(), config, port=port):
        notice = page.get_by_text("This chat started over")
        await expect(notice).to_be_visible()
        await expect(page.get_by_text("Here are your orders")).to_have_count(0)
        await send(page, "list orders")
        await expect(page.get_by_text("Here are your orders")).to_be_visible()
