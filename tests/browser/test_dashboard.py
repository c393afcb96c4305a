"""The dashboard in headless Chromium, beside the demo page: a visitor's refund waits on the
team, a teammate in another browser context decides it, and neither side reloads."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from tests.browser.test_widget import open_demo, send
from tests.support import Server, approve_over_api

PASSWORD = "correct horse battery"


async def add_teammate(server: Server, name: str, role: str) -> None:
    await server.app.state.runtime.accounts.create_teammate(name, PASSWORD, [role])


async def log_in(browser: Browser, server: Server, name: str) -> Page:
    """A teammate's page, in a browser context of its own (not the visitor's), logged in."""
    page = await browser.new_page()
    await page.goto(server.url + "/dashboard")
    await expect(page).to_have_url(server.url + "/dashboard/login")
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(server.url + "/dashboard")
    await expect(page.get_by_role("heading", name="Waiting")).to_be_visible()
    return page


async def mark(page: Page) -> None:
    """Tag the page's window: the tag is gone if the page is ever reloaded."""
    await page.evaluate("window.__unreloaded = true")


async def not_reloaded(page: Page) -> bool:
    return bool(await page.evaluate("window.__unreloaded === true"))


async def wait_and_open(browser: Browser, demo: Server, name: str) -> tuple[Page, Page]:
    """A visitor asks for a big refund; the teammate's dashboard shows it as it comes, and
    the teammate opens it. Returns (visitor's page, teammate's card page)."""
    visitor = await open_demo(browser, demo)
    dashboard = await log_in(browser, demo, name)
    await mark(visitor)
    await mark(dashboard)
    await expect(dashboard.locator('.card[data-status="waiting"]')).to_have_count(0)

    await send(visitor, "refund 250 on order 1002")
    card = visitor.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "waiting")
    listed = dashboard.locator('.card[data-status="waiting"]')
    await expect(listed).to_have_count(1)  # came in by itself
    assert await not_reloaded(dashboard)
    await expect(listed.locator(".effect")).to_have_text("Refund $250.00 on order #1002?")
    await expect(listed).to_contain_text("1 of 1 · support-lead")
    await listed.get_by_role("link", name="Refund").click()
    await expect(dashboard.get_by_role("heading", name="Exactly what runs")).to_be_visible()
    await expect(dashboard.locator(".entry-visitor")).to_have_text(
        "Visitor refund 250 on order 1002"
    )
    await mark(dashboard)
    return visitor, dashboard


async def test_a_teammate_approves_and_the_visitor_sees_it_done_without_reloading(
    browser: Browser, demo: Server
) -> None:
    await add_teammate(demo, "lena", "support-lead")
    visitor, page = await wait_and_open(browser, demo, "lena")
    # The pages' CSP runs this server's files only: htmx must need nothing it blocks.
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Security Policy" in m.text else None)
    await expect(page.locator("code.arg")).to_have_text(["1002", "250.0"])

    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator("#decision .notice")).to_have_text(
        "Approved. The calls run now, exactly as shown."
    )
    await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    await expect(page.locator("#decision .approvals")).to_contain_text("approved by lena")
    assert await not_reloaded(page)

    await expect(visitor.locator(".signoff-card")).to_have_attribute("data-status", "done")
    await expect(visitor.locator('.signoff-msg[data-role="bot"]').last).to_contain_text(
        "Refunded $250.00 on order #1002."
    )
    assert await not_reloaded(visitor)
    # The teammate's page follows the card to its end, with the result.
    await expect(page.locator("#decision [data-status]")).to_have_attribute("data-status", "done")
    await expect(page.locator("#decision .results")).to_contain_text("refund: done")
    assert await not_reloaded(page)

    await page.get_by_role("link", name="All cards").click()
    decided = page.locator('.card[data-status="done"]')
    await expect(decided).to_contain_text("Level 1 · support-lead: approved by lena")
    assert refused == []


async def test_a_teammate_rejects_with_a_reason_and_the_visitor_sees_it_rejected(
    browser: Browser, demo: Server
) -> None:
    await add_teammate(demo, "lena", "support-lead")
    visitor, page = await wait_and_open(browser, demo, "lena")

    await page.get_by_label("Reason").fill("refunds over 200 need the receipt")
    await page.get_by_role("button", name="Reject").click()
    await expect(page.locator("#decision .notice")).to_contain_text("Rejected. Nothing runs")
    await expect(page.locator("#decision .approvals")).to_contain_text(
        "rejected by lena via dashboard"
    )
    await expect(page.locator("#decision q")).to_have_text("refunds over 200 need the receipt")
    assert await not_reloaded(page)

    await expect(visitor.locator(".signoff-card")).to_have_attribute("data-status", "rejected")
    assert await not_reloaded(visitor)
    stored = await demo.engine.store.team_cards(10)
    assert [(c.status, c.decided_by, c.reason) for c in stored] == [
        ("rejected", "teammate:lena", "refunds over 200 need the receipt")
    ]


async def test_a_teammate_without_the_role_sees_the_card_but_no_approve_button(
    browser: Browser, demo: Server
) -> None:
    await add_teammate(demo, "fred", "finance")
    visitor, page = await wait_and_open(browser, demo, "fred")
    await expect(page.locator("#decision .note")).to_have_text(
        "Level 1 needs the role support-lead, which you do not have."
    )
    await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    await expect(page.get_by_role("button", name="Reject")).to_have_count(0)
    # Nor does a key with the same roles get further through the API.
    card_id = page.url.rsplit("/", 1)[-1]
    key = await demo.app.state.runtime.accounts.create_key("fred-script", ["finance"])
    assert (await approve_over_api(demo.url, card_id, key)).status_code == 403
    await expect(visitor.locator(".signoff-card")).to_have_attribute("data-status", "waiting")
    stored = await demo.engine.store.get_card(card_id)
    assert stored.status == "waiting"
