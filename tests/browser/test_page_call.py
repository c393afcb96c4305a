"""The host page's own button asks for an action with Signoff.call, in Chromium: the same
card opens in the widget, the visitor decides, and the promise settles with the outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from signoff.demo import demo_app, demo_site
from tests.browser.sockets import DroppableSocket
from tests.support import Server, running, settings


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """The demo shop with its site as `signoff demo` makes it: its page may call actions."""
    async with running(demo_app(), settings(tmp_path)) as server:
        server.app.state.runtime.sites["demo"] = demo_site("127.0.0.1", server.port)
        yield server


async def test_the_demo_pages_cancel_button_opens_the_card_and_hears_the_outcome(
    browser: Browser, server: Server
) -> None:
    page = await browser.new_page()
    await page.goto(server.url + "/demo")
    await page.get_by_role("button", name="Cancel order 1001", exact=True).click()
    card = page.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "pending")
    await expect(card.get_by_role("definition")).to_have_text(["#1001", "Ada Lovelace", "$89.50"])
    await card.get_by_role("button", name="Cancel order").click()
    await expect(card).to_have_attribute("data-status", "done")
    await expect(page.locator("#order-status")).to_have_text("cancelled")
    rows = await server.engine.audit.rows(card_id=await card.get_attribute("data-card-id"))
    assert [(r["status"], r["error"]) for r in rows] == [
        ("pending_confirmation", "waits for the visitor; called from the page"),
        ("success", None),
    ]

    # What the site does not let its pages call is refused, and audited.
    refused = await page.evaluate(
        "Signoff.call('refund', {order_id: 1002, amount: 10}).then("
        "() => 'ran', (error) => error.code + ': ' + error.message)"
    )
    assert refused == "forbidden: 'refund' is not an action this site's pages may call"
    [row] = await server.engine.audit.rows(action="refund")
    assert row["status"] == "refused"
    # Bad arguments are refused before any card.
    bad = await page.evaluate(
        "Signoff.call('cancel_order', {order_id: 'x'}).then(() => 'ran', (e) => e.code)"
    )
    assert bad == "bad_frame"
    await expect(card).to_have_count(1)
    # Arguments over a frame's limit are refused in the page; the socket stays up.
    huge = await page.evaluate(
        "Signoff.call('cancel_order', {note: 'x'.repeat(70000)}).then(() => 'ran', (e) => e.code)"
    )
    assert huge == "bad_frame"
    await page.get_by_role("textbox").fill("list orders")
    await page.get_by_role("textbox").press("Enter")
    await expect(page.get_by_text("Here are your orders")).to_be_visible()


async def test_a_page_call_made_while_the_socket_is_down_opens_one_card_after_reconnect(
    browser: Browser, server: Server
) -> None:
    page = await browser.new_page()
    socket = await DroppableSocket.open(page, server.url + "/demo")
    await expect(page.locator(".signoff-status")).to_be_hidden()
    await socket.drop()
    await expect(page.locator(".signoff-status")).to_have_text("Reconnecting…")
    # The page's button is pressed while the chat is away: the call waits for it.
    await page.evaluate(
        "() => { window.__outcome = Signoff.call('cancel_order', "
        "{order_id: 1001, customer: 'Ada Lovelace', total: 89.5})"
        ".then((update) => update.status, (error) => 'error ' + error.code); }"
    )
    socket.restore()
    card = page.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "pending", timeout=10_000)
    await card.get_by_role("button", name="Cancel order").click()
    assert await page.evaluate("window.__outcome") == "done"
    await expect(card).to_have_count(1)
    rows = await server.engine.audit.rows(action="cancel_order", status="success")
    assert len(rows) == 1  # ran once
