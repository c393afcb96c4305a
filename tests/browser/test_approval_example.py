"""docs/embedding.md's custom approval UI, run verbatim in Chromium: it draws the card's
effects and values, decides over the widget's socket, and closes when another tab decides."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.support import Server

EMBEDDING = Path(__file__).resolve().parents[2] / "docs" / "embedding.md"


def documented_example() -> str:
    """The html block of the "Custom approval UI" section, as the docs print it."""
    section = EMBEDDING.read_text().split("## Custom approval UI", 1)[1]
    match = re.search(r"```html\n(.*?)```", section, re.S)
    assert match, "docs/embedding.md: the custom approval UI example is gone"
    return match.group(1)


async def test_the_documented_dialog_decides_and_follows_other_tabs(
    browser: Browser, demo: Server
) -> None:
    example = documented_example()
    tag = '<script src="https://chat.example.com/widget.js" data-site="shop" async></script>'
    assert tag in example
    html = example.replace(tag, '<script src="/widget.js" data-site="demo" async></script>')

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(f"<!doctype html><html><body>{html}</body></html>")

    demo.app.router.routes.insert(0, Route("/account", page))
    context = await browser.new_context()
    first = await context.new_page()
    await first.goto(demo.url + "/account")
    await first.get_by_role("button", name="Open chat").click()
    await first.get_by_role("textbox").fill("cancel order 1001")
    await first.get_by_role("textbox").press("Enter")

    dialog = first.get_by_role("dialog", name=re.compile("Cancel order"))
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("dd")).to_have_text(
        ["Order: #1001", "Customer: Ada Lovelace", "Total: $89.50"]
    )
    await expect(dialog.locator("dt")).not_to_have_count(0)
    await expect(first.locator(".signoff-card")).to_have_count(0)  # the page drew it

    # A second tab of the same visitor gets the pending card too, and decides it there.
    second = await context.new_page()
    await second.goto(demo.url + "/account")
    other = second.get_by_role("dialog", name=re.compile("Cancel order"))
    await expect(other).to_be_visible()
    await other.get_by_role("button", name="Confirm").click()
    await expect(other).to_be_hidden()
    # The first tab's dialog follows the card's outcome instead of staying open.
    await expect(dialog).to_be_hidden()
    await context.close()
