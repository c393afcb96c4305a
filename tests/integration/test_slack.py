"""Slack approvals end to end: a server posting to a stand-in for Slack's Web API on
127.0.0.1, and signed (or forged) interaction requests sent to ``/slack/interactions``
the way Slack sends them."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from signoff import Signoff, team
from signoff.config import SlackSettings
from signoff.core.cards import Status
from signoff.engine import ActionContext
from signoff.engine.notify import CardEvent, EventType
from signoff.integrations.slack import SlackNotifier
from signoff.integrations.slack_blocks import APPROVE, REJECT, button_value
from signoff.store import open_store
from signoff.web.slack import MAX_BODY, NOT_LINKED
from tests.services import redis_prefix, redis_store_url
from tests.slack_standin import BOT_TOKEN, CHANNEL, StandInSlack, standin_slack
from tests.support import EchoCallBot, Server, Widget, audit_statuses, running, settings, widget
from tests.unit.test_slack_blocks import resource, team_card

SIGNING_SECRET = "standin-signing-secret"
LEAD, FINANCE, STRANGER = "U0LEAD", "U0FIN", "U0NOBODY"


def slack_app(runs: list[tuple[str, str]]) -> Signoff:
    """``refund x`` waits on a support lead; ``payout x`` on a support lead, then finance."""
    app = Signoff(bot=EchoCallBot(calls=("refund", "payout")))

    @app.action(kind="write", approver=team("support-lead"))
    async def refund(ctx: ActionContext, target: str) -> dict[str, Any]:
        """Refund the <customer> & tell them."""
        runs.append(("refund", target))
        return {"refunded": target}

    @app.action(kind="write", approver=team("support-lead", "finance"))
    async def payout(ctx: ActionContext, target: str) -> dict[str, Any]:
        """Pay a partner out."""
        runs.append(("payout", target))
        return {"paid": target}

    return app


@pytest.fixture
async def slack() -> AsyncIterator[StandInSlack]:
    async with standin_slack() as slack:
        yield slack


async def serve(slack: StandInSlack, tmp_path: Any) -> AsyncIterator[Server]:
    runs: list[tuple[str, str]] = []
    config = settings(
        tmp_path, slack=SlackSettings(BOT_TOKEN, SIGNING_SECRET, CHANNEL, slack.api_url)
    )
    async with running(slack_app(runs), config) as server:
        server.runs = runs  # type: ignore[attr-defined]
        accounts = server.app.state.runtime.accounts
        await accounts.create_teammate("lena", "lena-password", ["support-lead"], LEAD)
        await accounts.create_teammate("fred", "fred-password", ["finance"], FINANCE)
        yield server


@pytest.fixture
async def server(slack: StandInSlack, tmp_path: Any) -> AsyncIterator[Server]:
    async for server in serve(slack, tmp_path):
        yield server


def runs(server: Server) -> list[tuple[str, str]]:
    return server.runs  # type: ignore[attr-defined,no-any-return]


def interaction(user: str, action_id: str, value: str) -> dict[str, Any]:
    """A block_actions payload as Slack sends it for a click on a message button."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0ACME"},
        "api_app_id": "A0SIGNOFF",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": CHANNEL},
        "trigger_id": "123.456.abc",
        "team": {"id": "T0ACME", "domain": "acme"},
        "channel": {"id": CHANNEL, "name": "approvals"},
        "response_url": "https://hooks.slack.com/actions/T0ACME/1/x",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "signoff.decide.1",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": value,
                "action_ts": "1700000001.000001",
            }
        ],
    }


def signed(body: bytes, secret: str = SIGNING_SECRET, age: float = 0) -> dict[str, str]:
    timestamp = str(int(time.time() - age))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": signature or "",
    }


async def post(server: Server, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await client.post("/slack/interactions", content=body, headers=headers)


async def click(
    server: Server,
    user: str,
    card_id: str,
    level: int = 1,
    action_id: str = APPROVE,
    *,
    value: str | None = None,
    secret: str = SIGNING_SECRET,
    age: float = 0,
) -> httpx.Response:
    """A click on a button of the card's message, signed as Slack signs it."""
    payload = interaction(user, action_id, value or button_value(card_id, level))
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return await post(server, body, signed(body, secret, age))


async def waiting(w: Widget, slack: StandInSlack, text: str) -> tuple[dict[str, Any], Any]:
    """Ask for a team card; the card and the Slack message posted for it."""
    await w.hello()
    await w.say(text)
    card = await w.card("waiting")
    posted = await slack.latest("chat.postMessage", card["card_id"])
    return card, posted


async def refused_by(server: Server, action: str) -> list[tuple[str, str]]:
    rows = await server.engine.audit.rows(action=action, status="refused")
    return [(row["decided_by"], row["error"]) for row in rows]


async def test_an_approve_click_runs_the_card_and_the_message_says_who(
    each_store: str, slack: StandInSlack, tmp_path: Any
) -> None:
    async for server in serve(slack, tmp_path):
        async with widget(server) as w:
            card, posted = await waiting(w, slack, "refund ada")
            assert posted.body["channel"] == CHANNEL
            assert "Approval needed (support-lead): Refund" in posted.body["text"]
            assert "• Target: ada" in posted.text()
            assert "Level 1 of 1 · support-lead" in posted.text()
            # Plain text: Slack shows it as written, so it is not escaped for mrkdwn.
            assert "Refund the <customer> & tell them." in posted.text()
            approve, reject = posted.buttons()
            assert (approve["action_id"], reject["action_id"]) == (APPROVE, REJECT)
            assert json.loads(approve["value"]) == {"card_id": card["card_id"], "level": 1}

            answer = await click(server, LEAD, card["card_id"])
            assert (answer.status_code, answer.text) == (200, "")
            done = await w.update(card["card_id"], "done")
            assert done["decided_by"] == "teammate"
            await w.bot_says("refunded")

        updated = await slack.latest("chat.update", "*Done*")
        assert (updated.body["channel"], updated.body["ts"]) == (CHANNEL, "1700000000.000001")
        assert "Level 1 (support-lead): approved by lena via slack" in updated.text()
        assert "refund: done" in updated.text()
        assert updated.buttons() == []
        assert slack.of("chat.postMessage") == [posted]
        # Where the message is, for whichever instance sees the card's next event.
        record = await server.engine.store.get_record(f"slack:{card['card_id']}")
        assert json.loads(record) == {"channel": CHANNEL, "ts": "1700000000.000001"}
        assert slack.of("chat.postEphemeral") == []
        assert runs(server) == [("refund", "ada")]
        stored = await server.engine.store.get_card(card["card_id"])
        assert [(a["by"], a["channel"]) for a in stored.approvals] == [("teammate:lena", "slack")]
        assert await audit_statuses(server, "refund") == ["pending_confirmation", "success"]


async def test_a_reject_click_ends_the_card_and_nothing_runs(
    server: Server, slack: StandInSlack
) -> None:
    async with widget(server) as w:
        card, _ = await waiting(w, slack, "refund bob")
        answer = await click(server, LEAD, card["card_id"], action_id=REJECT)
        assert answer.status_code == 200
        await w.update(card["card_id"], "rejected")
        await w.bot_says("a teammate rejected it")
    updated = await slack.latest("chat.update", "*Rejected*")
    assert "Level 1 (support-lead): rejected by lena via slack" in updated.text()
    assert updated.buttons() == []
    assert runs(server) == []
    assert await audit_statuses(server, "refund") == ["pending_confirmation", "rejected"]


async def test_a_two_level_chain_is_signed_off_by_two_slack_users(
    server: Server, slack: StandInSlack
) -> None:
    async with widget(server) as w:
        card, posted = await waiting(w, slack, "payout acme")
        card_id = card["card_id"]
        assert "Level 1 of 2 · support-lead" in posted.text()

        # Finance may not take level 1: refused, told privately, the message left alone.
        wrong = await click(server, FINANCE, card_id, level=1)
        assert wrong.status_code == 200
        told = await slack.latest("chat.postEphemeral", "needs the role")
        assert (told.body["user"], told.body["channel"]) == (FINANCE, CHANNEL)
        assert told.body["text"] == (
            "Not recorded: level 1 needs the role support-lead, which you do not have."
        )
        assert slack.of("chat.update") == []

        assert (await click(server, LEAD, card_id, level=1)).status_code == 200
        second = await slack.latest("chat.update", "Waiting for finance")
        assert "Level 1 (support-lead): approved by lena via slack" in second.text()
        assert json.loads(second.buttons()[0]["value"]) == {"card_id": card_id, "level": 2}
        await w.update(card_id, "waiting")
        assert runs(server) == []

        # The level-1 button once more, even by the right teammate: that level is decided.
        stale = await click(server, LEAD, card_id, level=1)
        assert stale.status_code == 200
        await slack.latest("chat.postEphemeral", "level 1 of this card is already decided")

        assert (await click(server, FINANCE, card_id, level=2)).status_code == 200
        await w.update(card_id, "done")
    final = await slack.latest("chat.update", "*Done*")
    assert "Level 2 (finance): approved by fred via slack" in final.text()
    assert runs(server) == [("payout", "acme")]
    assert await refused_by(server, "payout") == [
        ("teammate:fred", "slack: level 1 needs the role support-lead, which you do not have"),
        ("teammate:lena", "slack: level 1 of this card is already decided"),
    ]


async def test_forged_and_stale_requests_are_refused_unread(
    server: Server, slack: StandInSlack, caplog: pytest.LogCaptureFixture
) -> None:
    """The signature is checked on the raw bytes first: an unsigned body is never parsed,
    so even one nested deeper than any parser follows gets 401, not a server error."""
    async with widget(server) as w:
        card, _ = await waiting(w, slack, "refund eve")
        card_id = card["card_id"]
        forged = await click(server, LEAD, card_id, secret="not-the-signing-secret")
        assert (forged.status_code, forged.text) == (401, "bad Slack signature")
        stale = await click(server, LEAD, card_id, age=301)
        assert (stale.status_code, stale.text) == (401, "stale Slack request timestamp")
        payload = interaction(LEAD, APPROVE, button_value(card_id, 1))
        body = urlencode({"payload": json.dumps(payload)}).encode()
        unsigned = await post(server, body, {"content-type": "application/x-www-form-urlencoded"})
        assert (unsigned.status_code, unsigned.text) == (401, "no valid Slack signature headers")
        # A genuine signature, over other bytes than those sent.
        tampered = await post(server, body, signed(b"payload=%7B%7D"))
        assert tampered.status_code == 401
        deep = urlencode({"payload": "[" * 30_000 + "]" * 30_000}).encode()
        nested = await post(server, deep, {"content-type": "application/x-www-form-urlencoded"})
        assert (nested.status_code, nested.text) == (401, "no valid Slack signature headers")
        assert await w.quiet(0.3) == []
        stored = await server.engine.store.get_card(card_id)
        assert (stored.status, stored.approvals) == ("waiting", [])

    assert runs(server) == []
    # Not read, so not audited on the card they would name; the log says each was refused.
    assert await refused_by(server, "refund") == []
    refusals = [r.getMessage() for r in caplog.records if r.name == "signoff.slack"]
    assert [m.rpartition(": ")[2] for m in refusals] == [
        "bad Slack signature",
        "stale Slack request timestamp",
        "no valid Slack signature headers",
        "bad Slack signature",
        "no valid Slack signature headers",
    ]
    assert slack.of("chat.postEphemeral") == slack.of("chat.update") == []


async def test_refused_clicks_change_nothing(server: Server, slack: StandInSlack) -> None:
    async with widget(server) as w:
        card, _ = await waiting(w, slack, "refund zed")
        card_id = card["card_id"]

        stranger = await click(server, STRANGER, card_id)
        assert stranger.status_code == 200
        told = await slack.latest("chat.postEphemeral", "not linked")
        assert (told.body["user"], told.body["text"]) == (STRANGER, NOT_LINKED)

        extra = json.dumps({"card_id": card_id, "level": 1, "amount": 1_000_000})
        more = await click(server, LEAD, card_id, value=extra)
        assert (more.status_code, more.text) == (
            400,
            "unexpected field 'amount' in the button's value",
        )
        other_app = await click(server, LEAD, card_id, action_id="other.approve")
        assert other_app.status_code == 400
        big = b"payload=" + b"x" * MAX_BODY
        assert (await post(server, big, signed(big))).status_code == 413

        assert await w.quiet(0.3) == []
        stored = await server.engine.store.get_card(card_id)
        assert (stored.status, stored.approvals) == ("waiting", [])
    assert runs(server) == []
    assert slack.of("chat.update") == []
    assert await refused_by(server, "refund") == [
        ("slack:U0NOBODY", "slack: not a linked teammate"),
        ("slack:U0LEAD", "slack: unexpected field 'amount' in the button's value"),
        (
            "slack:U0LEAD",
            "slack: actions.0.action_id: Input should be 'signoff.approve' or 'signoff.reject'",
        ),
    ]


async def test_a_replayed_click_after_the_decision_runs_nothing_again(
    server: Server, slack: StandInSlack
) -> None:
    async with widget(server) as w:
        card, _ = await waiting(w, slack, "refund ann")
        payload = interaction(LEAD, APPROVE, button_value(card["card_id"], 1))
        body = urlencode({"payload": json.dumps(payload)}).encode()
        headers = signed(body)
        assert (await post(server, body, headers)).status_code == 200
        await w.update(card["card_id"], "done")
        replay = await post(server, body, headers)  # the very same signed request
        assert replay.status_code == 200
        told = await slack.latest("chat.postEphemeral", "already")
        assert told.body["text"] == "Not recorded: this card is already done."
    assert runs(server) == [("refund", "ann")]
    assert await refused_by(server, "refund") == [
        ("teammate:lena", "slack: this card is already done")
    ]


async def test_slacks_rate_limit_is_waited_out(server: Server, slack: StandInSlack) -> None:
    slack.rate_limited["chat.postMessage"] = 1
    async with widget(server) as w:
        started = time.monotonic()
        card, _ = await waiting(w, slack, "refund rex")
        assert time.monotonic() - started >= 1.0  # Retry-After: 1
        assert slack.refused == 1
        assert len(slack.of("chat.postMessage")) == 1
        assert (await click(server, LEAD, card["card_id"])).status_code == 200
        await w.update(card["card_id"], "done")
    await slack.latest("chat.update", "*Done*")


async def test_an_unreachable_slack_never_holds_up_a_turn(tmp_path: Any) -> None:
    config = settings(
        tmp_path,
        slack=SlackSettings(BOT_TOKEN, SIGNING_SECRET, CHANNEL, "http://127.0.0.1:9/api/"),
    )
    runs: list[tuple[str, str]] = []
    started = time.monotonic()
    async with running(slack_app(runs), config) as server, widget(server) as w:
        await w.hello()
        await w.say("refund ida")
        card = await w.card("waiting")
        assert time.monotonic() - started < 3
        await server.app.state.runtime.accounts.create_teammate(
            "lena", "lena-password", ["support-lead"], LEAD
        )
        # Clicks still decide: only signoff's own messages to Slack are lost.
        assert (await click(server, LEAD, card["card_id"])).status_code == 200
        await w.update(card["card_id"], "done")
    assert runs == [("refund", "ida")]
    assert time.monotonic() - started < 15  # closing waited a bounded time for Slack


async def test_an_update_waits_for_the_message_another_instance_is_still_posting(
    slack: StandInSlack,
) -> None:
    """Two instances on one Redis: one posts the card's message (slowed by a rate limit),
    the other sees the card rejected first and edits the message once it exists."""
    config = SlackSettings(BOT_TOKEN, SIGNING_SECRET, CHANNEL, slack.api_url)
    async with redis_prefix() as prefix, AsyncExitStack() as stack:
        notifiers = []
        for _ in range(2):
            store = open_store(redis_store_url(prefix))
            await store.start()
            stack.push_async_callback(store.close)
            notifier = SlackNotifier(config, store)
            await notifier.start()
            stack.push_async_callback(notifier.close)
            notifiers.append(notifier)
        posting, deciding = notifiers
        card = team_card()
        slack.rate_limited["chat.postMessage"] = 1  # the post takes a second
        posting.notify(CardEvent(EventType.CARD_WAITING, card, resource(card)))
        await posting.outbox.flushed()  # queued before the card can be decided
        card.status, card.decided_by = Status.REJECTED, "teammate:fred"
        deciding.notify(CardEvent(EventType.CARD_CLOSED, card, resource(card)))
        update = await slack.latest("chat.update", "*Rejected*")
        assert len(slack.of("chat.postMessage")) == 1
        assert update.body["ts"] == "1700000000.000001"  # the message that was posted
        assert not update.buttons()
