"""axe-core over the widget with cards open and over each dashboard page, in light and dark:
any violation fails, named with the elements it was found on."""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, expect

from tests.browser.test_dashboard import PASSWORD, add_teammate
from tests.browser.test_widget import send
from tests.support import Server

SCHEMES = ["light", "dark"]


async def no_violations(page: Page, where: str) -> None:
    results = await Axe().run(page)
    found = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
    ]
    assert found == [], f"{where}: {found}"


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_the_widget_with_cards_open(browser: Browser, demo: Server, scheme: str) -> None:
    page = await browser.new_page(color_scheme=scheme)
    await page.goto(demo.url + "/demo")
    await send(page, "cancel order 1001")
    await expect(page.locator(".signoff-card")).to_have_attribute("data-status", "pending")
    await no_violations(page, "a pending card")
    await send(page, "refund 250 on order 1002")
    await expect(page.locator(".signoff-card").last).to_have_attribute("data-status", "waiting")
    await no_violations(page, "a withdrawn card and a team card")


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_every_dashboard_page(browser: Browser, demo: Server, scheme: str) -> None:
    await add_teammate(demo, "lena", "support-lead")
    visitor = await browser.new_page()
    await visitor.goto(demo.url + "/demo")
    await send(visitor, "refund 250 on order 1002")
    await expect(visitor.locator(".signoff-card")).to_have_attribute("data-status", "waiting")

    page = await browser.new_page(color_scheme=scheme)
    await page.goto(demo.url + "/dashboard/login")
    await no_violations(page, "login")
    await page.get_by_label("Name").fill("lena")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Waiting")).to_be_visible()
    await no_violations(page, "the queue")
    await page.locator(".card a").first.click()
    await expect(page.get_by_role("button", name="Approve")).to_be_visible()
    await no_violations(page, "a card")
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator(".notice")).to_be_visible()
    await no_violations(page, "a decided card")
    await page.goto(demo.url + "/dashboard/audit")
    await expect(page.locator("table.audit")).to_be_visible()
    await no_violations(page, "the audit log")
    await page.locator("a.conversation").first.click()
    await expect(page).to_have_url(re.compile("/dashboard/conversations/"))
    await no_violations(page, "a conversation")
