"""The embedded widget on the demo page, in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Browser, Page, expect
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

import signoff
import tests.support
from signoff import Signoff
from tests.support import Server, StreamingBot, running, settings

XSS = '<img src=x onerror="window.__pwned=1">'


def host_page(server: Server, path: str, html: str) -> None:
    """Serve a host page of the test's own from the app's origin."""

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    server.app.router.routes.insert(0, Route(path, page))


async def open_demo(browser: Browser, server: Server) -> Page:
    page = await browser.new_page()
    await page.goto(server.url + "/demo")
    await expect(page.locator(".signoff-panel")).to_have_attribute("data-open", "true")
    return page


async def send(page: Page, text: str) -> None:
    await page.locator(".signoff-input").fill(text)
    await page.locator(".signoff-input").press("Enter")


async def test_confirm_a_card_and_reload_brings_everything_back(
    browser: Browser, demo: Server
) -> None:
    page = await open_demo(browser, demo)
    await send(page, "cancel order 1001")
    card = page.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "pending")
    await expect(card.locator(".signoff-card-title")).to_have_text("Cancel order")
    await expect(card.locator(".signoff-card-text")).to_have_text(
        "Cancel order #1001 for Ada Lovelace, total $89.50?"
    )
    await expect(card.locator(".signoff-arg")).to_have_count(3)
    await card.locator(".signoff-confirm").click()
    await expect(card).to_have_attribute("data-status", "done")
    await expect(page.locator('.signoff-msg[data-role="bot"]').last).to_contain_text(
        "Done: order #1001 cancelled."
    )

    await page.reload()
    await expect(page.locator(".signoff-card")).to_have_count(1)
    await expect(page.locator(".signoff-card")).to_have_attribute("data-status", "done")
    await expect(page.locator('.signoff-msg[data-role="user"]')).to_have_text(["cancel order 1001"])
    await expect(page.locator('.signoff-msg[data-role="bot"]').last).to_contain_text(
        "Done: order #1001 cancelled."
    )


async def test_a_second_tab_shares_the_conversation_and_sees_the_outcome(
    browser: Browser, demo: Server
) -> None:
    context = await browser.new_context()
    first = await context.new_page()
    await first.goto(demo.url + "/demo")
    await send(first, "delete spam")
    await expect(first.locator(".signoff-card")).to_have_attribute("data-status", "pending")
    second = await context.new_page()
    await second.goto(demo.url + "/demo")
    card = second.locator(".signoff-card")
    await expect(card.locator(".signoff-card-text")).to_have_text(
        "Delete 7 spam messages for good?"
    )
    await card.locator(".signoff-confirm").click()
    await expect(first.locator(".signoff-card")).to_have_attribute("data-status", "done")
    await expect(card).to_have_attribute("data-status", "done")
    await context.close()


async def test_markup_in_bot_text_and_params_is_shown_as_text_and_runs_nothing(
    browser: Browser, demo: Server
) -> None:
    page = await open_demo(browser, demo)
    await send(page, XSS)
    await expect(page.locator('.signoff-msg[data-role="bot"]').last).to_contain_text(XSS)
    await send(page, f"note on order 1001: {XSS}")
    card = page.locator(".signoff-card")
    await expect(card.locator(".signoff-arg").last).to_contain_text(XSS)
    await expect(card.locator(".signoff-card-text")).to_have_text(
        f"Add a note to order #1001: {XSS}"
    )
    await card.locator(".signoff-confirm").click()
    await expect(card).to_have_attribute("data-status", "done")
    assert await page.evaluate("window.__pwned") is None
    images = await page.evaluate(
        "document.getElementById('signoff-root').shadowRoot.querySelectorAll('img').length"
    )
    assert images == 0


CUSTOM_PAGE = """<!doctype html><html><body>
<div id="approval" hidden><p id="what"></p>
  <button id="yes">Yes, go ahead</button><button id="no">No</button></div>
<p id="outcome"></p>
<script>
window.signoffSettings = {
  onApprovalRequest(card, decide) {
    document.getElementById("what").textContent = card.actions[0].effect;
    document.getElementById("approval").hidden = false;
    document.getElementById("yes").onclick = () => decide("confirm").then(
      (update) => { document.getElementById("outcome").textContent = "custom:" + update.status; });
    return true;
  }
};
</script>
<script src="/widget.js" data-site="demo" data-open="true" async></script>
</body></html>"""


async def test_a_custom_approval_ui_decides_over_the_widgets_socket(
    browser: Browser, demo: Server
) -> None:
    page = await browser.new_page()
    host_page(demo, "/custom", CUSTOM_PAGE)
    await page.goto(demo.url + "/custom")
    await send(page, "cancel order 1003")
    await expect(page.locator("#what")).to_have_text(
        "Cancel order #1003 for Alan Turing, total $34.99?"
    )
    await expect(page.locator(".signoff-card")).to_have_count(0)  # the hook drew it instead
    await page.locator("#yes").click()
    await expect(page.locator("#outcome")).to_have_text("custom:done")
    await send(page, "list orders")
    await expect(page.locator('.signoff-msg[data-role="bot"]').last).to_contain_text(
        "#1003 Alan Turing: $34.99 (cancelled)"
    )


async def test_team_card_shows_waiting_for_a_teammate(browser: Browser, demo: Server) -> None:
    page = await open_demo(browser, demo)
    await send(page, "refund 250 on order 1002")
    card = page.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "waiting")
    await expect(card.locator(".signoff-card-status")).to_contain_text("teammate")
    await expect(card.locator(".signoff-confirm")).to_have_count(0)


async def test_keyboard_only_visitor_can_open_chat_and_confirm(
    browser: Browser, demo: Server
) -> None:
    page = await browser.new_page()
    await page.goto(demo.url + "/demo")
    launcher = page.locator(".signoff-launcher")
    await expect(launcher).to_be_visible()
    # Opened on load, the panel leaves focus on the host page.
    assert await page.evaluate("document.activeElement === document.body")
    await launcher.focus()
    if await page.locator(".signoff-panel").get_attribute("data-open") == "true":
        await page.keyboard.press("Escape")
        await expect(page.locator(".signoff-panel")).to_have_attribute("data-open", "false")
        await expect(launcher).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator(".signoff-input")).to_be_focused()
    await page.keyboard.type("cancel order 1001")
    await page.keyboard.press("Enter")
    confirm = page.locator(".signoff-confirm")
    await expect(confirm).to_be_visible()
    await confirm.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator(".signoff-card")).to_have_attribute("data-status", "done")
    # The buttons are gone; focus stays in the widget, on the card that shows the outcome.
    await expect(page.locator(".signoff-card")).to_be_focused()
    log_role = await page.locator(".signoff-log").get_attribute("role")
    assert log_role == "log"


async def test_the_widget_fits_a_phone(browser: Browser, demo: Server) -> None:
    context = await browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True)
    page = await context.new_page()
    await page.goto(demo.url + "/demo")
    panel = page.locator(".signoff-panel")
    await expect(panel).to_have_attribute("data-open", "true")
    box = await panel.bounding_box()
    assert box is not None and box["width"] >= 370
    scroll_width = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 375
    await send(page, "cancel order 1001")
    await expect(page.locator(".signoff-confirm")).to_be_visible()
    button = await page.locator(".signoff-confirm").bounding_box()
    assert button is not None and button["height"] >= 44
    for round_button in (".signoff-send", ".signoff-close"):
        box = await page.locator(round_button).bounding_box()
        assert box is not None and box["width"] == box["height"] >= 44, round_button
    # The full-screen panel locks the page's scrolling, and gives it back on close.
    assert await page.evaluate("document.documentElement.style.overflow") == "hidden"
    await page.locator(".signoff-close").click()
    await expect(panel).to_have_attribute("data-open", "false")
    assert await page.evaluate("document.documentElement.style.overflow") == ""
    await context.close()


async def test_theme_and_locale_options_apply(browser: Browser, demo: Server) -> None:
    page = await browser.new_page()
    settings = {"locale": "de", "theme": {"primary": "rgb(200, 30, 30)"}}
    host_page(
        demo,
        "/themed",
        f"<script>window.signoffSettings = {json.dumps(settings)};</script>"
        '<script src="/widget.js" data-site="demo" data-open="true" async></script>',
    )
    await page.goto(demo.url + "/themed")
    await send(page, "cancel order 1001")
    await expect(page.locator(".signoff-confirm")).to_have_text("Bestätigen")
    colour = await page.evaluate(
        "getComputedStyle(document.getElementById('signoff-root'))"
        ".getPropertyValue('--signoff-primary').trim()"
    )
    assert colour == "rgb(200, 30, 30)"


async def test_the_widget_shows_bot_text_while_it_streams(browser: Browser, tmp_path: Path) -> None:
    bot = StreamingBot()
    async with running(Signoff(bot=bot), settings(tmp_path)) as server:
        page = await open_demo(browser, server)
        await send(page, "hi")
        reply = page.locator('.signoff-msg[data-role="bot"]')
        await expect(reply).to_have_text("Hello")
        bot.release.set()
        await expect(reply).to_have_text("Hello world")


async def test_theme_values_that_are_not_valid_for_their_property_are_ignored(
    browser: Browser, demo: Server
) -> None:
    page = await browser.new_page()
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    theme = {"background": "url(/evil.png)", "radius": "url(/evil.png)", "primary": "#0b5"}
    host_page(
        demo,
        "/bad-theme",
        f"<script>window.signoffSettings = {json.dumps({'theme': theme})};</script>"
        '<script src="/widget.js" data-site="demo" data-open="true" async></script>',
    )
    await page.goto(demo.url + "/bad-theme")
    await send(page, "list orders")
    await expect(page.locator('.signoff-msg[data-role="bot"]').last).to_contain_text("#1001")
    values = await page.evaluate(
        "const s = getComputedStyle(document.getElementById('signoff-root'));"
        "['--signoff-background', '--signoff-radius', '--signoff-primary']"
        ".map((name) => s.getPropertyValue(name).trim())"
    )
    assert values == ["#ffffff", "16px", "#0b5"]  # the widget's defaults, and the valid one
    assert not [url for url in fetched if "evil" in url]


ACCOUNT_PAGE = """<!doctype html><html><body>
<script>
window.signoffSettings = {userToken: %s};
window.welcomes = [];
window.addEventListener("signoff:ready", () => {
  Signoff.on("connected", (welcome) => window.welcomes.push(welcome));
});
</script>
<script src="/widget.js" data-site="demo" data-open="true" async></script>
</body></html>"""


async def test_logging_out_after_start_takes_the_signed_in_users_card_away(
    browser: Browser, demo: Server
) -> None:
    token = signoff.sign_user_token(tests.support.SECRET, "alice", 60)
    host_page(demo, "/account", ACCOUNT_PAGE % json.dumps(token))
    page = await browser.new_page()
    await page.goto(demo.url + "/account")
    await send(page, "cancel order 1001")
    card = page.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "pending")
    welcomes = await page.evaluate("window.welcomes")
    assert [w["user_id"] for w in welcomes] == ["alice"]
    assert all("session_token" not in w for w in welcomes)  # listeners never see it

    await page.evaluate("Signoff.init({userToken: null})")
    # The new hello carries no user token: the server refuses alice's session
    # (forbidden) and the widget starts a new anonymous conversation without her card.
    await page.wait_for_function("window.welcomes.length === 2")
    welcomes = await page.evaluate("window.welcomes")
    assert welcomes[1]["user_id"].startswith("anon_")
    assert welcomes[1]["session_id"] != welcomes[0]["session_id"]
    await expect(page.locator(".signoff-card")).to_have_count(0)
    await expect(page.locator(".signoff-confirm")).to_have_count(0)
    await expect(page.locator('.signoff-msg[data-role="user"]')).to_have_count(0)
    stored = await page.evaluate("localStorage.getItem('signoff:demo:session_id')")
    assert stored == welcomes[1]["session_id"]


async def test_scripted_clicks_and_oversized_messages_are_refused(
    browser: Browser, demo: Server
) -> None:
    page = await open_demo(browser, demo)
    too_long = await page.evaluate("Signoff.send('x'.repeat(4001))")
    assert too_long is None
    await expect(page.locator(".signoff-notice")).to_contain_text("too long")
    await expect(page.locator('.signoff-msg[data-role="user"]')).to_have_count(0)

    await send(page, "cancel order 1001")
    card = page.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "pending")
    # A host-page script clicking our button is not the visitor deciding.
    await page.evaluate(
        "document.getElementById('signoff-root').shadowRoot"
        ".querySelector('.signoff-confirm').click()"
    )
    await page.wait_for_timeout(500)
    await expect(card).to_have_attribute("data-status", "pending")
    await card.locator(".signoff-confirm").click()
    await expect(card).to_have_attribute("data-status", "done")
