"""Webhook events survive the instance that queued them: another instance sends them,
in order per card, with the ids they were given."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from tests.integration.test_webhooks import SECRET, Receiver
from tests.multi.conftest import Cluster, Instance, eventually
from tests.multi.test_teammates import signoff_command
from tests.services import redis_client
from tests.slack_standin import BOT_TOKEN, CHANNEL, standin_slack
from tests.support import approve_over_api, free_port, serving, widget

# Events of a confirmed ``wipe`` card, in the order they happen.
WIPE_EVENTS = ["card.decided", "call.executed", "card.closed"]


def webhook_config(cluster: Cluster, port: int) -> None:
    """One endpoint on ``port``, retried fast and long enough to outlast an instance,
    waited on longer than any test runs."""
    with cluster.config.open("a") as config:
        config.write(
            f'[[webhooks]]\nurl = "http://127.0.0.1:{port}/hooks"\nsecret = "{SECRET}"\n'
            "attempts = 100\nbackoff = 0.05\nmax_backoff = 0.2\ntimeout = 60\n"
        )


@asynccontextmanager
async def receiving_on(receiver: Receiver, port: int) -> AsyncIterator[Receiver]:
    config = uvicorn.Config(receiver.app, host="127.0.0.1", port=port, log_level="warning")
    async with serving(config):
        yield receiver


class HoldingReceiver(Receiver):
    """A receiver that takes the first delivery in and does not answer it until
    ``answer`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def endpoint(self, request: Request) -> Response:
        response = await super().endpoint(request)
        if len(self.received) == 1:
            await self.answer.wait()
        return response


async def outbox_contents(cluster: Cluster) -> list[str]:
    """Every entry in the deployment's outboxes, read from Redis itself."""
    prefix = parse_qs(urlsplit(cluster.env["SIGNOFF_STORE"]).query)["prefix"][0]
    redis = redis_client(cluster.env["SIGNOFF_STORE"])
    try:
        keys = [key async for key in redis.scan_iter(f"{prefix}:outbox:*")]
        return [e for key in keys for e in await redis.lrange(key, 0, -1)]  # type: ignore[misc]
    finally:
        await redis.aclose()


async def waiting_in_outbox(cluster: Cluster) -> int:
    return len(await outbox_contents(cluster))


async def outbox_holds(cluster: Cluster, entries: int, within: float = 20.0) -> None:
    """Wait until the outbox holds ``entries``, polling."""
    for _ in range(int(within / 0.05)):
        if await waiting_in_outbox(cluster) == entries:
            return
        await asyncio.sleep(0.05)
    assert await waiting_in_outbox(cluster) == entries


async def wipe(instance: Instance, target: str) -> str:
    """A confirmed wipe on ``instance``, run to the end; its card id."""
    async with widget(instance) as w:  # type: ignore[arg-type]
        card = await w.open_card(f"wipe {target}")
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says("result")
        return str(card["card_id"])


async def test_events_queued_by_a_killed_instance_are_sent_once_by_another(
    cluster: Cluster,
) -> None:
    port = free_port()  # the receiver is down until a is gone
    webhook_config(cluster, port)
    a = await cluster.start()
    cards = [await wipe(a, "x"), await wipe(a, "y")]
    b = await cluster.start()
    # Everything a queued is in the shared outbox before a dies.
    expected = len(cards) * len(WIPE_EVENTS)
    await outbox_holds(cluster, expected)
    await a.kill()

    async with receiving_on(Receiver(), port) as receiver:
        await receiver.events(expected, within=30)
        # Sent and taken off the outbox: nothing more can come.
        await outbox_holds(cluster, 0)
        await eventually(lambda: not receiver.handling, within=1)
        assert await b.health() == 200

    ids = Counter(d.headers["webhook-id"] for d in receiver.received)
    assert len(ids) == expected
    assert set(ids.values()) == {1}  # each event once
    assert receiver.forged == 0
    for card_id in cards:
        told = [
            d.event["type"]
            for d in receiver.received
            if d.event["data"]["card"]["card_id"] == card_id
        ]
        assert told == WIPE_EVENTS


async def test_an_event_a_killed_instance_was_sending_comes_again_with_its_id(
    cluster: Cluster,
) -> None:
    port = free_port()
    webhook_config(cluster, port)
    async with receiving_on(HoldingReceiver(), port) as receiver:
        a = await cluster.start()
        card_id = await wipe(a, "x")
        await receiver.events(1)  # a is sending the first event, and waits for an answer
        b = await cluster.start()
        await a.kill()
        receiver.answer.set()
        await receiver.events(len(WIPE_EVENTS) + 1, within=30)
        await outbox_holds(cluster, 0)
        assert await b.health() == 200

    first, *rest = receiver.received
    # b sent the event a was sending, signed with the same id: the receiver drops it.
    assert rest[0].headers["webhook-id"] == first.headers["webhook-id"]
    assert rest[0].event == first.event
    ids = Counter(d.headers["webhook-id"] for d in receiver.received)
    assert sorted(ids.values()) == [1, 1, 2]
    assert [d.event["type"] for d in rest] == WIPE_EVENTS
    assert {d.event["data"]["card"]["card_id"] for d in rest} == {card_id}
    assert receiver.forged == 0


async def test_slack_updates_queued_by_a_killed_instance_reach_the_message(
    cluster: Cluster,
) -> None:
    """a posts a team card's message and hangs on Slack's answer while the card is decided
    and runs; a dies; b posts the message as the card now stands, and keeps it updated."""
    lead = await signoff_command(cluster, "keys", "create", "leads", "--role", "support-lead")
    finance = await signoff_command(cluster, "keys", "create", "payouts", "--role", "finance")
    async with standin_slack() as slack:
        slack_env = {
            "SIGNOFF_SLACK_BOT_TOKEN": BOT_TOKEN,
            "SIGNOFF_SLACK_SIGNING_SECRET": "standin-signing-secret",
            "SIGNOFF_SLACK_CHANNEL": CHANNEL,
            "SIGNOFF_SLACK_API_URL": slack.api_url,
        }
        answer = slack.holding["chat.postMessage"] = asyncio.Event()
        a = await cluster.start(**slack_env)
        async with widget(a) as visitor:  # type: ignore[arg-type]
            await visitor.hello()
            await visitor.say("refund 250")
            card_id = (await visitor.card("waiting"))["card_id"]
            await slack.latest("chat.postMessage", card_id)  # a waits for Slack's answer
            for key in (lead, finance):
                assert (await approve_over_api(a.url, card_id, key)).status_code == 200
            await visitor.update(card_id, "done")
        # The card's last update is queued behind the post a is still waiting on.
        closed = f'"card_id":"{card_id}","type":"card.closed"'
        for _ in range(400):
            if any(closed in entry for entry in await outbox_contents(cluster)):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the card's last update never reached the outbox")
        b = await cluster.start(**slack_env)
        await a.kill()
        answer.set()

        update = await slack.latest("chat.update", "*Done*", within=30)
        await outbox_holds(cluster, 0)
        assert await b.health() == 200
    posts = slack.of("chat.postMessage")
    # a's post never got its answer; b posted again, as the card stood, and edits that one.
    assert len(posts) == 2
    assert "*Done*" in posts[1].text() and not posts[1].buttons()
    assert not update.buttons()
