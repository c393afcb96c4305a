"""The dashboard, Slack and the REST API deciding the same card at the same moment.

Each channel goes over real HTTP, as a teammate would use it: a logged-in dashboard
client posting the card page's form, a click signed as Slack signs it, and an API key.
Whatever the interleaving, one decision counts and the card runs once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from signoff.config import SlackSettings
from signoff.demo import demo_app
from tests.integration.test_api import ESCALATED
from tests.integration.test_dashboard import PASSWORD, teammate
from tests.integration.test_slack import SIGNING_SECRET, click
from tests.slack_standin import BOT_TOKEN, CHANNEL, StandInSlack, standin_slack
from tests.support import Server, approve_over_api, running, settings, widget

ROUNDS = 4
SLACK_USER = "U0SAM"


@pytest.fixture
async def server(each_store: str, tmp_path: Any) -> AsyncIterator[Server]:
    async with standin_slack() as slack:
        slack_settings = SlackSettings(BOT_TOKEN, SIGNING_SECRET, CHANNEL, slack.api_url)
        async with running(demo_app(), settings(tmp_path, slack=slack_settings)) as server:
            server.slack = slack  # type: ignore[attr-defined]
            yield server


async def test_dashboard_slack_and_api_racing_on_a_card_run_it_once(server: Server) -> None:
    accounts = server.app.state.runtime.accounts
    await accounts.create_teammate("lena", PASSWORD, ["support-lead"])
    await accounts.create_teammate("sam", PASSWORD, ["support-lead"], SLACK_USER)
    key = await accounts.create_key("approvals-bot", ["support-lead"])
    slack: StandInSlack = server.slack  # type: ignore[attr-defined]
    async with teammate(server, "lena") as lena:
        for _ in range(ROUNDS):
            async with widget(server) as visitor:
                await visitor.hello()
                await visitor.say(ESCALATED)
                card_id = (await visitor.card("waiting"))["card_id"]
                await lena.page(f"/dashboard/cards/{card_id}")  # the form's CSRF token
                await slack.latest("chat.postMessage", card_id)
                dashboard, slack_click, rest = await asyncio.gather(
                    lena.decide(card_id),
                    click(server, SLACK_USER, card_id),
                    approve_over_api(server.url, card_id, key),
                )
                # Slack always gets its 200 at once; a losing click is told privately.
                assert slack_click.status_code == 200
                assert dashboard.status_code in {200, 409}
                assert rest.status_code in {200, 409}
                await visitor.update(card_id, "done")
                await visitor.bot_says("Refunded")
                card = await server.engine.store.get_card(card_id)
                assert len(card.approvals) == 1
                winner = card.approvals[0]["channel"]
                assert (dashboard.status_code == 200) == (winner == "dashboard")
                assert (rest.status_code == 200) == (winner == "api")
    await server.engine.drain()
    ran = await server.engine.audit.rows(action="refund", status="success")
    assert len(ran) == ROUNDS
