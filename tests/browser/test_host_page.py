"""The widget on host pages that are strict (a CSP naming nothing but signoff's script and
socket) or careless (CSS rules for every element), in Chromium."""

from __future__ import annotations

from playwright.async_api import Browser, expect
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from tests.support import Server

# Everything after the site's own rules: what docs/embedding.md tells a host page to add.
HOSTILE_CSS = """
* { padding: 30px !important; border: 5px solid red !important; margin: 20px !important; }
div { display: block !important; position: static !important; }
"""


def serve_shop(server: Server, csp: str) -> str:
    """A shop page on another origin than signoff's (localhost, while signoff is named
    127.0.0.1), sending ``csp``; returns its URL."""
    widget = f"http://127.0.0.1:{server.port}/widget.js"
    html = (
        '<!doctype html><html><head><link rel="stylesheet" href="/shop.css"></head>'
        f'<body><h1>Shop</h1><script src="{widget}" data-site="demo" async></script>'
        "</body></html>"
    )

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(html, headers={"content-security-policy": csp})

    async def stylesheet(request: Request) -> PlainTextResponse:
        return PlainTextResponse(HOSTILE_CSS, media_type="text/css")

    server.app.router.routes[:0] = [Route("/shop", page), Route("/shop.css", stylesheet)]
    return f"http://localhost:{server.port}/shop"


async def test_the_documented_csp_is_enough_and_page_rules_do_not_reach_the_widget(
    browser: Browser, demo: Server
) -> None:
    signoff = f"127.0.0.1:{demo.port}"
    # The page's own rules, then exactly the two docs/embedding.md asks for.
    csp = (
        "default-src 'none'; style-src 'self'; "
        f"script-src http://{signoff}; connect-src ws://{signoff}"
    )
    page = await browser.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Policy" in m.text else None)
    await page.goto(serve_shop(demo, csp))

    launcher = page.get_by_role("button", name="Open chat")
    await expect(launcher).to_be_visible()
    styled = await launcher.evaluate(
        "b => [getComputedStyle(b).position, getComputedStyle(b).borderTopWidth]"
    )
    assert styled == ["fixed", "0px"]  # the widget's own style, not the page's
    host = await page.evaluate(
        "() => { const s = getComputedStyle(document.getElementById('signoff-root'));"
        " return [s.paddingTop, s.borderTopWidth, s.marginTop]; }"
    )
    assert host == ["0px", "0px", "0px"]

    await launcher.click()
    await page.get_by_role("textbox").fill("cancel order 1001")
    await page.get_by_role("textbox").press("Enter")
    card = page.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "pending")
    await card.get_by_role("button", name="Cancel order").click()
    await expect(card).to_have_attribute("data-status", "done")
    assert violations == []
