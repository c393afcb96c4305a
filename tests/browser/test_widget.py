"""The embedded widget on the demo page, in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

import signoff
import tests.support
from signoff import Signoff
from signoff.demo import demo_app
from tests.browser.sockets import DroppableSocket
from tests.support import Server, StreamingBot, running, settings

XSS = '<img src=x onerror="window.__pwned=1">'


WIDGET_TAG = '<script src="/widget.js" data-site="demo" data-open="true" async></script>'


def host_page(server: Server, path: str, settings: str, body: str = "") -> None:
    """Serve a host page of the test's own from the app's origin: ``body``, then the widget
    embedded with ``settings`` (JavaScript for window.signoffSettings)."""
    html = (
        f"<!doctype html><html><body>{body}"
        f"<script>window.signoffSettings = {settings};</script>{WIDGET_TAG}</body></html>"
    )

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


async def test_the_demo_works_under_its_strict_csp_and_no_page_can_frame_it(
    browser: Browser, demo: Server
) -> None:
    page = await browser.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Security Policy" in m.text else None)
    answer = await page.goto(demo.url + "/demo")
    assert answer is not None
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "unsafe-inline" not in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"
    await expect(page.locator(".signoff-panel")).to_have_attribute("data-open", "true")
    await page.get_by_role(
        "button", name="cancel order 1001", exact=True
    ).click()  # the page's own script
    card = page.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "pending")  # over the WebSocket
    await card.locator(".signoff-confirm").click()
    await expect(card).to_have_attribute("data-status", "done")
    assert refused == []

    # Another origin framing the demo, to make its visitor click Confirm unawares, gets no
    # demo in the frame.
    framing = f'<iframe id="shop" src="http://localhost:{demo.port}/demo"></iframe>'

    async def framer(request: Request) -> HTMLResponse:
        return HTMLResponse(framing)

    demo.app.router.routes.insert(0, Route("/framer", framer))
    attacker = await browser.new_page()
    await attacker.goto(demo.url + "/framer")
    framed = attacker.frame_locator("#shop")
    await expect(framed.locator("body")).to_be_attached()
    assert await framed.locator(".logo").count() == 0
    assert await framed.locator("#signoff-root").count() == 0


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


CUSTOM_UI = """<div id="approval" hidden><p id="what"></p>
  <button id="yes">Yes, go ahead</button><button id="no">No</button></div>
<p id="outcome"></p>"""
CUSTOM_SETTINGS = """{
  onApprovalRequest(card, decide) {
    document.getElementById("what").textContent = card.actions[0].effect;
    document.getElementById("approval").hidden = false;
    document.getElementById("yes").onclick = () => decide("confirm").then(
      (update) => { document.getElementById("outcome").textContent = "custom:" + update.status; });
    return true;
  }
}"""


async def test_a_custom_approval_ui_decides_over_the_widgets_socket(
    browser: Browser, demo: Server
) -> None:
    page = await browser.new_page()
    host_page(demo, "/custom", CUSTOM_SETTINGS, CUSTOM_UI)
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
    # Roles and levels are the team's business: the visitor reads who they wait for.
    await expect(card.locator(".signoff-card-status")).to_have_text("Waiting for a teammate")
    # The visitor cannot approve it, but can take it back.
    await expect(card.get_by_role("button")).to_have_text(["Withdraw request"])
    await card.get_by_role("button", name="Withdraw request").click()
    await expect(card).to_have_attribute("data-status", "cancelled")
    await expect(card.get_by_role("button")).to_have_count(0)
    card_id = await card.get_attribute("data-card-id")
    assert (await demo.engine.store.get_card(card_id)).status == "cancelled"


async def test_a_card_reads_as_the_shop_means_it(browser: Browser, demo: Server) -> None:
    page = await open_demo(browser, demo)
    await send(page, "cancel order 1001")
    card = page.get_by_role("group", name="Cancel order").first
    await expect(card.locator(".signoff-card-badge")).to_have_text("Can't be undone")
    await expect(card.get_by_role("term")).to_have_text(["Order", "Customer", "Total"])
    await expect(card.get_by_role("definition")).to_have_text(["#1001", "Ada Lovelace", "$89.50"])
    await expect(card.get_by_role("button")).to_have_text(["Cancel order", "Keep order", "Say why"])

    # Moving on without deciding withdraws the card, and it says so.
    await send(page, "list orders")
    await expect(card).to_have_attribute("data-status", "cancelled")
    await expect(card.locator(".signoff-card-status")).to_have_text(
        "Withdrawn — you sent a new message"
    )

    await send(page, "cancel order 1002")
    second = page.locator(".signoff-card").last
    await second.get_by_role("button", name="Cancel order").click()
    await expect(second).to_have_attribute("data-status", "done")
    await expect(second.locator(".signoff-action-result")).to_have_text(
        "Done · Order #1002 cancelled"
    )
    assert "{" not in await second.inner_text()


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
    # The card that answers takes focus (not its first button: Enter again decides nothing).
    await expect(page.locator(".signoff-card")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator(".signoff-card")).to_have_attribute("data-status", "pending")
    await page.keyboard.press("Tab")
    confirm = page.locator(".signoff-confirm")
    await expect(confirm).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator(".signoff-card")).to_have_attribute("data-status", "done")
    # The buttons are gone; focus stays in the widget, on the card that shows the outcome.
    await expect(page.locator(".signoff-card")).to_be_focused()
    log_role = await page.locator(".signoff-log").get_attribute("role")
    assert log_role == "log"
    # Two buttons close the panel; each has a name of its own.
    assert await launcher.get_attribute("aria-label") == "Hide chat"
    assert await page.locator(".signoff-close").get_attribute("aria-label") == "Close chat"

    # Someone typing their next message keeps the composer when a card arrives.
    await page.locator(".signoff-input").fill("and also")
    await page.locator(".signoff-input").focus()
    await page.evaluate("Signoff.send('cancel order 1002')")
    await expect(page.locator(".signoff-card")).to_have_count(2)
    await expect(page.locator(".signoff-card").last).to_have_attribute("data-status", "pending")
    await expect(page.locator(".signoff-input")).to_be_focused()


async def test_a_chain_taller_than_the_panel_keeps_its_title_and_buttons_in_view(
    browser: Browser, demo: Server
) -> None:
    context = await browser.new_context(viewport={"width": 375, "height": 480}, has_touch=True)
    page = await context.new_page()
    await page.goto(demo.url + "/demo")
    await page.get_by_role("button", name="Open chat").click()
    await send(page, "cancel orders 1001 1002 1003")
    card = page.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "pending")
    log = page.locator(".signoff-log")
    view = await log.bounding_box()
    whole = await card.bounding_box()
    assert view is not None and whole is not None and whole["height"] > view["height"]

    async def in_view(part: str) -> bool:
        box = await card.locator(part).bounding_box()
        assert box is not None and view is not None
        return (
            box["y"] >= view["y"] - 1 and box["y"] + box["height"] <= view["y"] + view["height"] + 1
        )

    # Wherever the log is scrolled within the card, both ends of what it asks stay put.
    for position in ("top", "middle", "bottom"):
        await card.evaluate(
            "(el, where) => el.scrollIntoView({block: where === 'middle' ? 'center' : "
            "(where === 'top' ? 'start' : 'end')})",
            position,
        )
        assert await in_view(".signoff-card-title"), position
        assert await in_view(".signoff-card-buttons"), position
    await card.get_by_role("button", name="Confirm all").click()
    await expect(card).to_have_attribute("data-status", "done")
    await context.close()


async def test_the_widget_fits_a_phone(browser: Browser, demo: Server) -> None:
    context = await browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True)
    page = await context.new_page()
    await page.goto(demo.url + "/demo")
    panel = page.locator(".signoff-panel")
    # data-open="true" would cover the whole page with the panel: on a phone the launcher
    # waits for the visitor instead.
    await expect(page.get_by_role("button", name="Open chat")).to_be_visible()
    await expect(panel).to_have_attribute("data-open", "false")
    assert await page.evaluate("document.documentElement.style.overflow") == ""
    await page.get_by_role("button", name="Open chat").click()
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
    host_page(demo, "/themed", json.dumps(settings))
    await page.goto(demo.url + "/themed")
    # A refund names no buttons of its own: the widget's, in German.
    await send(page, "refund 10 on order 1002")
    await expect(page.locator(".signoff-confirm")).to_have_text("Bestätigen")
    await expect(page.locator(".signoff-cancel")).to_have_text("Nicht jetzt")
    await expect(page.locator(".signoff-card-badge")).to_have_text("Braucht Ihre Zustimmung")
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
    host_page(demo, "/bad-theme", json.dumps({"theme": theme}))
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


RECORD_WELCOMES = """<script>
window.welcomes = [];
window.addEventListener("signoff:ready", () => {
  Signoff.on("connected", (welcome) => window.welcomes.push(welcome));
});
</script>"""


async def test_logging_out_after_start_takes_the_signed_in_users_card_away(
    browser: Browser, demo: Server
) -> None:
    token = signoff.sign_user_token(tests.support.SECRET, "alice", 60)
    host_page(demo, "/account", json.dumps({"userToken": token}), RECORD_WELCOMES)
    page = await browser.new_page()
    await page.goto(demo.url + "/account")
    await send(page, "cancel order 1001")
    card = page.locator(".signoff-card")
    await expect(card).to_have_attribute("data-status", "pending")
    welcomes = await page.evaluate("window.welcomes")
    assert [w["user_id"] for w in welcomes] == ["alice"]
    assert all("session_token" not in w for w in welcomes)  # listeners never see it

    # A message alice sent just before logging out is still unconfirmed when the user
    # changes: it must not go out again into the next user's conversation.
    await page.evaluate("Signoff.send('list orders'); Signoff.init({userToken: null})")
    # The new hello carries no user token: the server refuses alice's session
    # (forbidden) and the widget starts a new anonymous conversation without her card.
    await page.wait_for_function("() => window.welcomes.length === 2")
    welcomes = await page.evaluate("window.welcomes")
    assert welcomes[1]["user_id"].startswith("anon_")
    assert welcomes[1]["session_id"] != welcomes[0]["session_id"]
    await expect(page.locator(".signoff-card")).to_have_count(0)
    await expect(page.locator(".signoff-confirm")).to_have_count(0)
    await expect(page.locator('.signoff-msg[data-role="user"]')).to_have_count(0)
    stored = await page.evaluate("localStorage.getItem('signoff:demo:session_id')")
    assert stored == welcomes[1]["session_id"]
    # The outbox keeps its order, so had alice's message stayed queued it would go first.
    await send(page, "hi")
    await expect(page.locator('.signoff-msg[data-role="bot"]')).to_contain_text(["demo shop"])
    await expect(page.locator('.signoff-msg[data-role="user"]')).to_have_text(["hi"])


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


TOKEN_KEY = "signoff:demo:session"


async def test_an_ended_session_offers_a_new_conversation(browser: Browser, tmp_path: Path) -> None:
    # The server ends a session session_ttl plus a 2 s grace after its last message.
    async with running(
        demo_app(), settings(tmp_path, session_ttl=1.0, sweep_interval=0.1)
    ) as server:
        page = await open_demo(browser, server)
        await send(page, "cancel order 1001")
        await expect(page.locator(".signoff-card")).to_have_attribute("data-status", "pending")
        old_session = await page.evaluate(f"localStorage.getItem('{TOKEN_KEY}_id')")
        assert old_session

        restart = page.locator(".signoff-restart")
        await expect(restart).to_be_visible(timeout=10_000)
        await expect(page.locator(".signoff-ended-text")).to_have_text(
            "This conversation has ended"
        )
        await expect(page.locator(".signoff-input")).to_be_hidden()
        await expect(page.locator(".signoff-confirm")).to_have_count(0)  # nothing to decide
        assert await page.evaluate(f"localStorage.getItem('{TOKEN_KEY}')") is None

        await restart.click()
        await expect(restart).to_be_hidden()
        await expect(page.locator(".signoff-input")).to_be_focused()
        await expect(page.locator(".signoff-log > *")).to_have_count(0)
        await send(page, "list orders")
        await expect(page.locator('.signoff-msg[data-role="bot"]')).to_contain_text(["#1001"])
        await expect(page.locator('.signoff-msg[data-role="user"]')).to_have_text(["list orders"])
        await expect(page.locator(".signoff-card")).to_have_count(0)
        new_session = await page.evaluate(f"localStorage.getItem('{TOKEN_KEY}_id')")
        assert new_session and new_session != old_session
        assert await page.evaluate(f"localStorage.getItem('{TOKEN_KEY}')")


async def test_a_tab_follows_when_another_tab_starts_a_new_session(
    browser: Browser, demo: Server
) -> None:
    context = await browser.new_context()
    first = await context.new_page()
    await first.goto(demo.url + "/demo")
    await send(first, "hi")
    await expect(first.locator('.signoff-msg[data-role="bot"]')).to_contain_text(["demo shop"])
    first_session = await first.evaluate(f"localStorage.getItem('{TOKEN_KEY}_id')")

    second = await context.new_page()
    await second.goto(demo.url + "/demo")
    await expect(second.locator('.signoff-msg[data-role="user"]')).to_have_text(["hi"])
    # The second tab forgets the stored session and reloads: it starts a new one, and
    # the first tab hears of it through the storage event.
    await second.evaluate(f"localStorage.removeItem('{TOKEN_KEY}')")
    await second.reload()
    await expect(second.locator(".signoff-panel")).to_have_attribute("data-open", "true")
    await second.wait_for_function(
        f"(old) => (localStorage.getItem('{TOKEN_KEY}_id') || old) !== old", arg=first_session
    )
    await expect(second.locator(".signoff-msg")).to_have_count(0)
    await send(second, "list orders")

    for page in (first, second):
        await expect(page.locator('.signoff-msg[data-role="user"]')).to_have_text(["list orders"])
        await expect(page.locator('.signoff-msg[data-role="bot"]')).to_contain_text(["#1001"])
    await context.close()


@pytest.mark.parametrize("error_first", [True, False], ids=["error-first", "outcome-first"])
async def test_the_losing_tab_of_a_double_confirm_shows_the_outcome_not_an_error(
    browser: Browser, demo: Server, error_first: bool
) -> None:
    context = await browser.new_context()
    await context.add_init_script(
        "window.errors = [];"
        "addEventListener('signoff:ready', () =>"
        "  Signoff.on('error', (error) => window.errors.push(error.code)));"
    )
    # Each tab's decision is held until both tabs have sent one, so both reach the server
    # and one of them surely loses the claim. The loser's already_decided then reaches its
    # tab either before everything the run sends, or after the card.update saying "done"
    # (an error has no seq: the protocol lets it arrive anywhere between history frames).
    held: list[tuple[WebSocketRoute, str | bytes]] = []
    delayed: list[tuple[WebSocketRoute, str | bytes]] = []
    done: set[int] = set()
    losers: list[int] = []
    lost = asyncio.Event()

    def relay(tab: int) -> Callable[[WebSocketRoute], None]:
        def route(ws: WebSocketRoute) -> None:
            server = ws.connect_to_server()

            def from_page(message: str | bytes) -> None:
                if '"decision"' not in str(message):
                    server.send(message)
                    return
                held.append((server, message))
                if len(held) == 2:
                    for target, frame in held:
                        target.send(frame)

            def from_server(message: str | bytes) -> None:
                frame = json.loads(message)
                if frame.get("code") == "already_decided":
                    losers.append(tab)
                    lost.set()
                    if error_first or tab in done:
                        ws.send(message)
                    else:
                        delayed.append((ws, message))
                    if error_first:
                        for target, later in delayed:
                            target.send(later)
                        delayed.clear()
                    return
                # Everything after the decisions waits for the error, in order: a history
                # frame let through ahead of an earlier one would be dropped as seen.
                if error_first and len(held) == 2 and not lost.is_set():
                    delayed.append((ws, message))
                    return
                ws.send(message)
                update = frame.get("type") == "card.update"
                if update and frame.get("status") == "done" and not error_first:
                    done.add(tab)
                    for target, later in [d for d in delayed if d[0] is ws]:
                        target.send(later)
                        delayed.remove((target, later))

            ws.on_message(from_page)
            server.on_message(from_server)

        return route

    pages = [await context.new_page() for _ in range(2)]
    for tab, page in enumerate(pages):
        await page.route_web_socket("**/ws", relay(tab))
    await pages[0].goto(demo.url + "/demo")
    await send(pages[0], "cancel order 1001")
    await pages[1].goto(demo.url + "/demo")
    for page in pages:
        await expect(page.locator(".signoff-card")).to_have_attribute("data-status", "pending")

    await asyncio.gather(*(page.locator(".signoff-confirm").click() for page in pages))
    await asyncio.wait_for(lost.wait(), 5)
    assert len(held) == 2 and len(losers) == 1
    loser = pages[losers[0]]
    await loser.wait_for_function("() => window.errors.includes('already_decided')")
    for page in pages:
        card = page.locator(".signoff-card")
        await expect(card).to_have_attribute("data-status", "done")
        await expect(card.locator(".signoff-card-status")).to_have_text("Done — 1 action completed")
        await expect(card.locator(".signoff-card-error")).to_be_hidden()
        await expect(card.locator(".signoff-card-error")).to_have_text("")
        await expect(card.locator(".signoff-confirm")).to_have_count(0)
    await context.close()


async def test_a_message_sent_while_the_socket_is_down_is_delivered_once_after_reconnect(
    browser: Browser, demo: Server
) -> None:
    page = await browser.new_page()
    socket = await DroppableSocket.open(page, demo.url + "/demo")
    await send(page, "hi")
    await expect(page.locator('.signoff-msg[data-role="bot"]')).to_contain_text(["demo shop"])

    await socket.drop()
    await expect(page.locator(".signoff-status")).to_have_text("Reconnecting…")
    await send(page, "list orders")
    pending = page.locator('.signoff-row[data-pending="true"]')
    await expect(pending.locator(".signoff-msg")).to_have_text("list orders")
    # Pending is shown by an outline, not by fading the text below 4.5:1 contrast.
    style = await pending.locator(".signoff-msg").evaluate(
        "(el) => [getComputedStyle(el).opacity, getComputedStyle(el).outlineStyle]"
    )
    assert style[0] == "1" and style[1] != "none", style

    socket.restore()
    await expect(pending).to_have_count(0, timeout=10_000)
    await expect(page.locator(".signoff-status")).to_be_hidden()
    await expect(page.locator('.signoff-msg[data-role="bot"]').last).to_contain_text("#1001")
    # Once: one row for it, and one reply to it.
    await expect(page.locator('.signoff-msg[data-role="user"]')).to_have_text(["hi", "list orders"])
    await expect(page.locator('.signoff-msg[data-role="bot"]')).to_have_count(2)
    await expect(page.locator(".signoff-msg-meta")).to_have_count(0)


async def test_a_reload_after_history_was_trimmed_shows_the_snapshot(
    browser: Browser, tmp_path: Path
) -> None:
    # So few frames kept that the first card's frames are gone by the time of the reload.
    config = settings(tmp_path, store="memory://?max_frames=6")
    async with running(demo_app(), config) as server:
        page = await open_demo(browser, server)
        await send(page, "cancel order 1001")
        first = page.locator(".signoff-card").first
        await first.locator(".signoff-confirm").click()
        await expect(first).to_have_attribute("data-status", "done")
        await send(page, "list orders")
        await expect(page.locator('.signoff-msg[data-role="bot"]').last).to_contain_text(
            "Here are your orders"
        )
        await send(page, "cancel order 1002")
        await expect(page.locator(".signoff-card").nth(1)).to_have_attribute(
            "data-status", "pending"
        )

        await page.reload()
        cards = page.locator(".signoff-card")
        await expect(cards).to_have_count(2)
        await expect(cards.first).to_have_attribute("data-status", "done")
        await expect(page.locator('.signoff-msg[data-role="user"]')).to_have_text(
            ["cancel order 1001", "list orders", "cancel order 1002"]
        )
        await expect(page.locator(".signoff-msg", has_text="Here are your orders")).to_have_count(1)
        await cards.nth(1).locator(".signoff-confirm").click()
        await expect(cards.nth(1)).to_have_attribute("data-status", "done")


async def test_a_new_conversation_opens_with_the_sites_greeting_and_things_to_try(
    browser: Browser, tmp_path: Path
) -> None:
    from signoff.demo import DEMO_GREETING, DEMO_SUGGESTIONS, demo_site

    async with running(demo_app(), settings(tmp_path)) as server:
        server.app.state.runtime.sites["demo"] = demo_site("127.0.0.1", server.port)
        page = await open_demo(browser, server)
        await expect(page.get_by_role("heading", name="Shop assistant", exact=True)).to_be_visible()
        await expect(page.get_by_text(DEMO_GREETING)).to_be_visible()
        things = page.get_by_role("group", name="Things to try")
        await expect(things.get_by_role("button")).to_have_text(DEMO_SUGGESTIONS)
        await things.get_by_role("button", name="list orders").click()
        await expect(page.get_by_text("Here are your orders")).to_be_visible()
        await expect(things).to_have_count(0)
        # A reload shows the conversation, not the greeting's suggestions again.
        await page.reload()
        await expect(page.get_by_text("Here are your orders")).to_be_visible()
        await expect(page.get_by_role("group", name="Things to try")).to_have_count(0)


# A white pixel, which the demo page's CSP (default-src 'self') does not let it load.
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mP8/x8AAwMCAO+ip1sAAAAASUVORK5CYII="
)
OWN = "own"  # the server's own favicon, which the page may load


@pytest.mark.parametrize(
    "avatar", [OWN, PIXEL, "http://127.0.0.1:9/bot.png", None], ids=["own", "csp", "gone", "none"]
)
async def test_the_header_shows_the_bots_picture_or_its_first_letter(
    browser: Browser, tmp_path: Path, avatar: str | None
) -> None:
    from dataclasses import replace

    from signoff.demo import demo_site

    async with running(demo_app(), settings(tmp_path)) as server:
        if avatar == OWN:
            avatar = server.url + "/static/favicon.svg"
        site = replace(demo_site("127.0.0.1", server.port), bot_avatar=avatar)
        server.app.state.runtime.sites["demo"] = site
        page = await browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(server.url + "/demo")
        picture = page.locator(".signoff-header .signoff-avatar")
        await expect(picture).to_be_visible()
        await expect(picture).to_have_attribute("aria-hidden", "true")  # the name says who
        if avatar and avatar.endswith("favicon.svg"):
            loaded = picture.locator("img")
            await expect(loaded).to_have_attribute("src", avatar)
            await page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=await loaded.element_handle()
            )
            assert [e for e in errors if "signoff" in e] == []
            return
        await expect(picture).to_have_text("S")  # "Shop assistant"
        await expect(picture.locator("img")).to_have_count(0)
        named = [e for e in errors if "[signoff]" in e]
        if avatar is None:
            assert named == []
        else:
            # A picture that does not load is the site owner's to fix: named once, with how.
            assert len(named) == 1 and f"the bot_avatar {avatar} did not load" in named[0]
            assert "img-src" in named[0]


async def test_messages_show_when_they_were_sent(browser: Browser, demo: Server) -> None:
    page = await open_demo(browser, demo)
    await send(page, "list orders")
    rows = page.locator(".signoff-row:has(.signoff-msg[data-message-id])")
    await expect(rows.locator("time")).to_have_count(2)  # the visitor's and the bot's
    sent = await rows.locator("time").evaluate_all(
        "times => times.map(t => [t.textContent, Date.now() - Date.parse(t.dateTime), t.hidden])"
    )
    for shown, age, _ in sent:
        assert re.fullmatch(r"\d{1,2}:\d{2}( [AP]M)?", shown), shown
        assert 0 <= age < 60_000
    # Within one minute the time shows once, under the first message.
    if sent[0][0] == sent[1][0]:
        assert [hidden for _, _, hidden in sent] == [False, True]
    # A reload shows the same times, from the history.
    await page.reload()
    await expect(page.locator(".signoff-row time")).to_have_count(2)


async def test_a_custom_approval_ui_may_say_why_the_visitor_declined(
    browser: Browser, demo: Server
) -> None:
    page = await open_demo(browser, demo)
    await page.evaluate(
        """() => Signoff.init({onApprovalRequest(card, decide) {
            window.__told = decide("cancel", "  too pricey  ");
            return true;
        }})"""
    )
    await send(page, "cancel order 1001")
    await expect(page.get_by_text("Okay, I did not cancel")).to_be_visible()
    outcome = await page.evaluate("window.__told")
    assert (outcome["status"], outcome["reason"]) == ("cancelled", "too pricey")
    # A reason goes with a decline only: a confirm with one is refused in the page.
    await page.evaluate(
        """() => Signoff.init({onApprovalRequest(card, decide) {
            decide("confirm", "why not").catch(e => { window.__error = String(e); });
            return true;
        }})"""
    )
    await send(page, "cancel order 1002")
    await page.wait_for_function("() => window.__error !== undefined")
    assert "a reason goes with cancel only" in await page.evaluate("window.__error")
    await demo.engine.drain()
    [row] = await demo.engine.audit.rows(status="cancelled")
    assert row["error"] == "the user declined, saying why (10 characters, not kept)"


async def test_the_visitor_may_say_why_they_decline_a_card(browser: Browser, demo: Server) -> None:
    page = await open_demo(browser, demo)
    await send(page, "cancel order 1001")
    card = page.locator(".signoff-card").last
    field = card.get_by_role("textbox", name="Why not? The assistant reads this")
    await expect(field).to_be_hidden()  # out of the way until asked for
    await card.get_by_role("button", name="Say why").click()
    await expect(field).to_be_focused()
    await field.fill("I still want it")
    await field.press("Enter")  # declines, saying why
    await expect(card).to_have_attribute("data-status", "cancelled")
    await demo.engine.drain()
    [row] = await demo.engine.audit.rows(status="cancelled")
    assert row["error"] == "the user declined, saying why (15 characters, not kept)"
    conversation = await demo.engine.store.load_conversation(row["session_id"])
    told = [m for m in conversation if m["role"] == "tool"][-1]
    assert json.loads(told["content"])["why"] == "I still want it"
