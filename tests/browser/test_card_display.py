"""One card whose arguments try to show something other than what runs (an IBAN behind a
right-to-left override, a newline that forges a parameter line, Slack markup), drawn
everywhere a card is drawn: the visitor's widget and the teammate's dashboard in headless
Chromium, the Slack message and the webhook payload. Each shows the hidden characters as
escapes and the parameters one line each; the call runs with its arguments as they were."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from signoff import Signoff, Text, ToolCall, team
from signoff.config import SlackSettings
from signoff.core.canonical import args_hash
from signoff.core.display import visible
from signoff.engine import ActionContext
from tests.browser.test_dashboard import add_teammate, log_in
from tests.browser.test_widget import host_page, send
from tests.integration.test_webhooks import Receiver, receiving
from tests.slack_standin import BOT_TOKEN, CHANNEL, StandInSlack, standin_slack
from tests.support import Server, running, settings
from tests.unit.test_display import HIDDEN
from tests.unit.test_slack_blocks import MARKUP, text_objects

# Drawn as it is, the override makes this read "DE89 3704 0044 0532 0130 00".
IBAN = "\u202e00 0130 0532 0440 4073 98ED"
NOTE = "thanks\n• amount: 1 " + " ".join(MARKUP)
ARGS = {"iban": IBAN, "amount": 250.0, "note": NOTE}

IBAN_SHOWN = "⟨U+202E⟩00 0130 0532 0440 4073 98ED"
NOTE_SHOWN = "thanks↵• amount: 1 " + " ".join(MARKUP)
EFFECT = f"Pay $250.00 to {IBAN_SHOWN}: {NOTE_SHOWN}"


class PayoutBot:
    """Proposes the hostile payout to whatever the visitor says; reports what came back."""

    async def respond(self, conversation: list[dict[str, Any]]) -> AsyncIterator[Any]:
        if conversation[-1]["role"] == "tool":
            yield Text("result: " + conversation[-1]["content"])
        else:
            yield ToolCall("payout", ARGS)


def payout_app(runs: list[dict[str, Any]]) -> Signoff:
    app = Signoff(bot=PayoutBot())

    @app.action(
        kind="write",
        approver=team("finance"),
        message="Pay {{ amount|money }} to {{ iban }}: {{ note }}",
        labels={"iban": "IBAN"},
        formats={"amount": "{{ amount|money }}"},
    )
    async def payout(ctx: ActionContext, iban: str, amount: float, note: str) -> dict[str, Any]:
        runs.append({"iban": iban, "amount": amount, "note": note})
        return {"paid": amount}

    return app


@pytest.fixture
async def slack() -> AsyncIterator[StandInSlack]:
    async with standin_slack() as slack:
        yield slack


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving(Receiver()) as receiver:
        yield receiver


@pytest.fixture
async def server(slack: StandInSlack, receiver: Receiver, tmp_path: Any) -> AsyncIterator[Server]:
    runs: list[dict[str, Any]] = []
    config = settings(
        tmp_path,
        slack=SlackSettings(BOT_TOKEN, "signing-secret", CHANNEL, slack.api_url),
        webhooks=(receiver.hook(),),
    )
    async with running(payout_app(runs), config) as server:
        server.runs = runs  # type: ignore[attr-defined]
        host_page(server, "/shop", "{}")
        yield server


async def visitor_asks(browser: Browser, server: Server) -> Page:
    """The visitor's page, once the payout card waits for finance."""
    page = await browser.new_page()
    await page.goto(server.url + "/shop")
    await send(page, "pay my supplier")
    await expect(page.get_by_role("group", name="Payout")).to_have_attribute(
        "data-status", "waiting"
    )
    return page


async def test_the_visitor_and_the_teammate_see_the_escapes_and_one_line_per_parameter(
    browser: Browser, server: Server
) -> None:
    await add_teammate(server, "fred", "finance")
    visitor = await visitor_asks(browser, server)
    card = visitor.get_by_role("group", name="Payout")
    await expect(card.get_by_role("term")).to_have_text(["IBAN", "Amount", "Note"])
    await expect(card.get_by_role("definition")).to_have_text([IBAN_SHOWN, "$250.00", NOTE_SHOWN])
    await expect(card.locator(".signoff-card-text")).to_have_text(EFFECT)
    drawn = await card.inner_text()
    assert "\u202e" not in drawn
    assert "\n• amount: 1" not in drawn

    dashboard = await log_in(browser, server, "fred")
    listed = dashboard.locator('.card[data-status="waiting"]')
    await expect(listed.locator(".effect")).to_have_text(EFFECT)
    await listed.get_by_role("link", name="Payout").click()
    await expect(dashboard.locator("p.effect")).to_have_text(EFFECT)
    params = dashboard.get_by_role("table", name="Parameters of payout")
    await expect(params.get_by_role("row")).to_have_count(4)  # the head and three parameters
    await expect(params.get_by_role("rowheader")).to_have_text(
        ["IBAN iban", "Amount amount", "Note note"]
    )
    # As it reads, and exactly as it runs.
    await expect(params.get_by_role("cell")).to_have_text(
        [
            IBAN_SHOWN,
            f'"{IBAN_SHOWN}"',
            "$250.00",
            "250.0",
            NOTE_SHOWN,
            json.dumps(NOTE, ensure_ascii=False),
        ]
    )
    assert "\u202e" not in await dashboard.locator("main").inner_text()

    await dashboard.get_by_role("button", name="Approve").click()
    await expect(card).to_have_attribute("data-status", "done")
    # Only the drawing changed: the call ran with its arguments as the bot gave them.
    assert server.runs == [ARGS]  # type: ignore[attr-defined]


async def test_slack_and_webhooks_show_the_escapes_and_keep_the_arguments_exact(
    browser: Browser, server: Server, slack: StandInSlack, receiver: Receiver
) -> None:
    await visitor_asks(browser, server)

    posted = await slack.latest("chat.postMessage", "Approval needed")
    shown = posted.text()
    assert f"• IBAN: {IBAN_SHOWN}\n• Amount: $250.00\n• Note: {NOTE_SHOWN}" in shown
    assert EFFECT in shown
    assert "\u202e" not in shown
    # Every text but the buttons' own labels.
    objects = text_objects([b for b in posted.body["blocks"] if b["type"] != "actions"])
    assert all(o["emoji"] is False for o in objects if o["type"] == "plain_text")
    for markup in MARKUP:
        assert not any(markup in o["text"] for o in objects if o["type"] == "mrkdwn")

    [event] = await receiver.events(1)
    assert event["type"] == "card.waiting"
    card = event["data"]["card"]
    # What a receiver would show is shown; what it would act on is the call as held.
    assert (card["text"], card["actions"][0]["effect"]) == (EFFECT, EFFECT)
    assert card["actions"][0]["args"] == ARGS
    assert card["args_hash"] == args_hash([{"action": "payout", "args": ARGS}])


async def test_the_widget_shows_hidden_characters_as_the_server_does(
    browser: Browser, server: Server
) -> None:
    page = await browser.new_page()
    await page.goto(server.url + "/shop")
    await page.wait_for_function("() => window.Signoff !== undefined")
    sample = "".join(HIDDEN) + "\n plain שלום 🙂 <b>"
    # Signoff.visible is what a custom approval UI (onApprovalRequest) draws values with.
    assert await page.evaluate("(text) => Signoff.visible(text)", sample) == visible(sample)
    nested = {"iban": IBAN, "lines": ["a\nb"]}
    assert await page.evaluate("(value) => Signoff.visible(value)", nested) == visible(
        json.dumps(nested, ensure_ascii=False, separators=(",", ":"))
    )
