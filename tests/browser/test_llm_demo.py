"""The demo page in headless Chromium with its bot on a stand-in model server."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, expect

from signoff.config import LLMSettings
from signoff.demo import demo_app
from tests.browser.test_widget import open_demo, send
from tests.llm_standin import MODEL, StandInModel, answer, calls
from tests.support import running, settings

ADA = {"order_id": 1001, "customer": "Ada Lovelace", "total": 89.5}


async def test_the_demo_on_a_model_streams_text_and_confirms_its_card(
    browser: Browser, model: StandInModel, tmp_path: Any
) -> None:
    looking = calls(("get_order", {"order_id": 1001}), text=("Let me look that up.",))
    looking.hold_after = 2  # the model pauses after its first words
    model.then(
        looking,
        calls(("cancel_order", ADA), text=("Please confirm below.",)),
        answer("Done: ", "order #1001 is cancelled."),
    )
    config = LLMSettings(base_url=model.base_url, model=MODEL, timeout=5.0, max_retries=0)
    async with running(demo_app(config), settings(tmp_path, llm=config)) as server:
        page = await open_demo(browser, server)
        await send(page, "Could you cancel my order 1001?")
        bot = page.locator('.signoff-msg[data-role="bot"]')
        await expect(bot.last).to_contain_text("Let me look that up.")
        await expect(page.locator(".signoff-card")).to_have_count(0)
        looking.release.set()

        card = page.locator(".signoff-card")
        await expect(card).to_have_attribute("data-status", "pending")
        await expect(card.locator(".signoff-card-text")).to_have_text(
            "Cancel order #1001 for Ada Lovelace, total $89.50?"
        )
        await card.locator(".signoff-confirm").click()
        await expect(card).to_have_attribute("data-status", "done")
        await expect(bot.last).to_contain_text("Done: order #1001 is cancelled.")
    assert model.requests[2].tool_results() == [
        {"status": "ok", "result": {"order_id": 1001, "status": "cancelled"}}
    ]
