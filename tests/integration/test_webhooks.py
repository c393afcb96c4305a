"""Outgoing webhooks: every delivery checked by a receiver that verifies Standard Webhooks
signatures, with the engine driven by a widget and teammates as in test_team."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from signoff import Signoff, team
from signoff.config import WebhookSettings
from signoff.core.teammates import Channel, Teammate, Verdict
from signoff.engine import ActionContext
from signoff.engine.notify import EventType
from signoff.integrations.webhooks import WebhookNotifier
from tests.support import (
    CountingShop,
    EchoCallBot,
    Server,
    approve_over_api,
    free_port,
    running,
    serving,
    settings,
    widget,
)

SECRET = "whsec_" + base64.b64encode(b"signoff webhook test key 32 bytes").decode()
LEAD = Teammate("lena", frozenset({"support-lead"}), Channel.DASHBOARD)
PAYMENTS = Teammate("payments-system", frozenset({"payments-system"}), Channel.API)


@dataclass
class Delivery:
    endpoint: str  # the receiver's path: one receiver serves several endpoints
    headers: dict[str, str]
    event: dict[str, Any]


class Receiver:
    """A webhook receiver on 127.0.0.1: verifies every delivery's signature, records it,
    and answers with ``answers`` in turn, then 200."""

    def __init__(self, *answers: Response, secret: str = SECRET) -> None:
        self.webhook = Webhook(secret)
        self.answers = list(answers)
        self.received: list[Delivery] = []
        self.forged = 0  # deliveries whose signature did not verify
        self.url = ""
        self.on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.handling: set[asyncio.Task[None]] = set()
        self.arrived = asyncio.Condition()
        self.app = Starlette(routes=[Route("/{endpoint}", self.endpoint, methods=["POST"])])

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        try:
            event = self.webhook.verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.forged += 1
            return Response(status_code=401)
        self.received.append(
            Delivery(request.path_params["endpoint"], dict(request.headers), event)
        )
        async with self.arrived:
            self.arrived.notify_all()
        answer = self.answers.pop(0) if self.answers else Response(status_code=200)
        if answer.status_code == 200 and self.on_event is not None:
            # Acknowledge at once and act afterwards, as a receiver should.
            task = asyncio.create_task(self.on_event(event))
            self.handling.add(task)
            task.add_done_callback(self.handling.discard)
        return answer

    def hook(self, endpoint: str = "hooks", **options: Any) -> WebhookSettings:
        """Settings for an endpoint here, retrying fast."""
        fast: dict[str, Any] = {"attempts": 3, "backoff": 0.01, "max_backoff": 0.05}
        return WebhookSettings(f"{self.url}/{endpoint}", SECRET, **{**fast, **options})

    async def events(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)
        return [delivery.event for delivery in self.received]


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    port = free_port()
    config = uvicorn.Config(receiver.app, host="127.0.0.1", port=port, log_level="warning")
    async with serving(config):
        receiver.url = f"http://127.0.0.1:{port}"
        yield receiver


def refund_app(runs: list[dict[str, Any]]) -> Signoff:
    """Refunds need a support lead, then the payments system (another program)."""
    app = Signoff(bot=EchoCallBot(calls=("refund",)))

    @app.action(kind="write", approver=team("support-lead", "payments-system"))
    async def refund(ctx: ActionContext, target: str) -> dict[str, Any]:
        """Refund money to the customer."""
        runs.append({"amount": target, "decided_by": ctx.decided_by})
        return {"refunded": target}

    return app


def deliveries(outcome: str) -> float:
    value = REGISTRY.get_sample_value("signoff_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


def summary(event: dict[str, Any]) -> tuple[str, str, int]:
    card = event["data"]["card"]
    return event["type"], card["status"], card["level"]


async def test_a_two_level_card_is_told_in_order_with_valid_signatures(
    each_store: str, tmp_path: Any
) -> None:
    runs: list[dict[str, Any]] = []
    async with receiving(Receiver()) as receiver:
        config = settings(tmp_path, webhooks=(receiver.hook(),))
        async with running(refund_app(runs), config) as server, widget(server) as w:
            await w.hello()
            await w.say("refund 250")
            card = await w.card("waiting")
            await server.engine.team_decide(card["card_id"], Verdict.APPROVE, LEAD)
            await server.engine.team_decide(card["card_id"], Verdict.APPROVE, PAYMENTS)
            await w.update(card["card_id"], "done")
            events = await receiver.events(6)

    assert [summary(event) for event in events] == [
        ("card.waiting", "waiting", 1),
        ("card.decided", "waiting", 2),  # level 1 approved; the card moved on
        ("card.waiting", "waiting", 2),
        ("card.decided", "approved", 2),
        ("call.executed", "running", 2),
        ("card.closed", "done", 2),
    ]
    assert {event["data"]["card"]["card_id"] for event in events} == {card["card_id"]}
    first, last = events[1]["data"]["approval"], events[3]["data"]["approval"]
    assert (first["level"], first["role"], first["by"]) == (1, "support-lead", "teammate:lena")
    assert (last["level"], last["by"], last["channel"]) == (2, "teammate:payments-system", "api")
    executed = events[4]["data"]
    assert (executed["index"], executed["result"]) == (
        0,
        {
            "action": "refund",
            "status": "done",
            "result": {"refunded": "250"},
            "message": "Refunded: 250",
        },
    )
    assert events[5]["data"]["card"]["results"] == [executed["result"]]
    ids = [delivery.headers["webhook-id"] for delivery in receiver.received]
    assert len(set(ids)) == 6 and all(i.startswith("msg_") for i in ids)
    for delivery in receiver.received:
        assert delivery.headers["content-type"] == "application/json"
        sent = datetime.fromisoformat(delivery.event["timestamp"])
        assert abs((datetime.now(UTC) - sent).total_seconds()) < 60
    assert receiver.forged == 0
    assert runs == [{"amount": "250", "decided_by": "teammate:payments-system"}]


async def test_the_external_system_decides_its_level(each_store: str, tmp_path: Any) -> None:
    """The hand-off: level 2 belongs to a program that learns of it by webhook."""
    runs: list[dict[str, Any]] = []
    server: Server | None = None
    key = ""
    answers: list[int] = []

    async def payments_system(event: dict[str, Any]) -> None:
        """Approves over the REST API, with its own key, as an outside program would."""
        card = event["data"]["card"]
        if event["type"] == "card.waiting" and card["role"] == "payments-system":
            assert server is not None
            answer = await approve_over_api(server.url, card["card_id"], key)
            answers.append(answer.status_code)

    async with receiving(Receiver()) as receiver:
        receiver.on_event = payments_system
        config = settings(tmp_path, webhooks=(receiver.hook(events=[EventType.CARD_WAITING]),))
        async with running(refund_app(runs), config) as server, widget(server) as w:
            accounts = server.app.state.runtime.accounts
            key = await accounts.create_key("payments-system", ["payments-system"])
            await w.hello()
            await w.say("refund 250")
            card = await w.card("waiting")
            await server.engine.team_decide(card["card_id"], Verdict.APPROVE, LEAD)
            done = await w.update(card["card_id"], "done")
            assert done["decided_by"] == "teammate"
            await w.bot_says("refunded")
            stored = await server.engine.store.get_card(card["card_id"])

    assert answers == [200]
    assert [(a["role"], a["by"], a["channel"]) for a in stored.approvals] == [
        ("support-lead", "teammate:lena", "dashboard"),
        ("payments-system", "teammate:key:payments-system", "api"),
    ]
    assert runs == [{"amount": "250", "decided_by": "teammate:key:payments-system"}]


async def test_failed_deliveries_come_again_with_the_same_id(tmp_path: Any) -> None:
    delivered = deliveries("delivered")
    failing = Receiver(Response(status_code=500), Response(status_code=500))
    async with receiving(failing) as receiver:
        config = settings(tmp_path, webhooks=(receiver.hook(events=[EventType.CARD_WAITING]),))
        async with running(refund_app([]), config) as server, widget(server) as w:
            await w.hello()
            await w.say("refund 250")
            await w.card("waiting")
            events = await receiver.events(3)
            await asyncio.sleep(0.2)  # and no fourth time

    assert len(receiver.received) == 3
    assert len({d.headers["webhook-id"] for d in receiver.received}) == 1
    assert events[0] == events[1] == events[2]
    assert deliveries("delivered") == delivered + 1


async def test_a_refused_delivery_is_not_retried(tmp_path: Any) -> None:
    refused = deliveries("refused")
    async with receiving(Receiver(Response(status_code=400))) as receiver:
        config = settings(tmp_path, webhooks=(receiver.hook(events=[EventType.CARD_WAITING]),))
        async with running(refund_app([]), config) as server, widget(server) as w:
            await w.hello()
            await w.say("refund 250")
            card = await w.card("waiting")
            await receiver.events(1)
            await asyncio.sleep(0.3)
            assert len(receiver.received) == 1
            # The endpoint goes on with the card's next event.
            await server.engine.team_decide(card["card_id"], Verdict.APPROVE, LEAD)
            events = await receiver.events(2)

    assert [summary(event) for event in events] == [
        ("card.waiting", "waiting", 1),
        ("card.waiting", "waiting", 2),
    ]
    assert deliveries("refused") == refused + 1


async def test_a_receiver_that_keeps_failing_gets_a_bounded_number_of_attempts(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    failed = deliveries("failed")
    down = Receiver(*(Response(status_code=503) for _ in range(10)))
    async with receiving(down) as receiver:
        hook = receiver.hook(events=[EventType.CARD_WAITING], attempts=4)
        config = settings(tmp_path, webhooks=(hook,))
        async with running(refund_app([]), config) as server, widget(server) as w:
            await w.hello()
            await w.say("refund 250")
            await w.card("waiting")
            await receiver.events(4)
            await asyncio.sleep(0.3)
    assert len(receiver.received) == 4
    assert deliveries("failed") == failed + 1
    assert "not delivered: HTTP 503 after 4 attempts" in caplog.text


async def test_retry_after_is_honoured(tmp_path: Any) -> None:
    busy = Receiver(Response(status_code=429, headers={"retry-after": "1"}))
    async with receiving(busy) as receiver:
        # Waits start at 0.01 s; Retry-After is honoured up to max_backoff.
        hook = receiver.hook(events=[EventType.CARD_WAITING], max_backoff=3)
        config = settings(tmp_path, webhooks=(hook,))
        async with running(refund_app([]), config) as server, widget(server) as w:
            await w.hello()
            await w.say("refund 250")
            await w.card("waiting")
            await receiver.events(1)
            asked = time.monotonic()
            await receiver.events(2)
            assert time.monotonic() - asked >= 0.9


async def test_a_dead_receiver_never_holds_up_a_turn(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One endpoint accepts connections and never answers, one refuses them; both with
    the production retry policy. The visitor's turn goes on; shutdown waits a bounded
    time and logs what was not delivered."""
    monkeypatch.setattr(WebhookNotifier, "grace", 0.5)
    abandoned = deliveries("abandoned")

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up

    silent = await asyncio.start_server(hang, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    hooks = (
        WebhookSettings(f"http://127.0.0.1:{silent_port}/hooks", SECRET),
        WebhookSettings(f"http://127.0.0.1:{free_port()}/hooks", SECRET),
    )
    shop = CountingShop()
    async with silent:
        async with running(shop.app, settings(tmp_path, webhooks=hooks)) as server:
            async with widget(server) as w:
                started = time.monotonic()
                card = await w.open_card("wipe a")
                await w.decide(card)
                await w.update(card["card_id"], "done")
                await w.bot_says("wiped")
                assert time.monotonic() - started < 1.5
            closing = time.monotonic()
        assert time.monotonic() - closing < 3.0

    assert shop.runs == [("wipe", {"target": "a"})]
    # card.decided, call.executed and card.closed, for each endpoint.
    assert deliveries("abandoned") == abandoned + 6
    assert caplog.text.count("shutting down; ") == 6
    assert "card.closed" in caplog.text


async def test_events_go_only_to_endpoints_that_asked_for_them(tmp_path: Any) -> None:
    async with receiving(Receiver()) as receiver:
        hooks = (
            receiver.hook("closed", events=[EventType.CARD_CLOSED]),
            receiver.hook("everything"),
        )
        config = settings(tmp_path, webhooks=hooks)
        async with running(refund_app([]), config) as server, widget(server) as w:
            await w.hello()
            await w.say("refund 250")
            card = await w.card("waiting")
            await server.engine.team_decide(
                card["card_id"], Verdict.REJECT, LEAD, reason="duplicate"
            )
            await w.update(card["card_id"], "rejected")
            await receiver.events(4)
            await asyncio.sleep(0.2)

    got = {
        endpoint: [
            (d.event["type"], d.event["data"]["card"]["status"])
            for d in receiver.received
            if d.endpoint == endpoint
        ]
        for endpoint in ("closed", "everything")
    }
    assert got == {
        "closed": [("card.closed", "rejected")],
        "everything": [
            ("card.waiting", "waiting"),
            ("card.decided", "rejected"),
            ("card.closed", "rejected"),
        ],
    }
    decided = next(d.event for d in receiver.received if d.event["type"] == "card.decided")
    assert (decided["data"]["approval"]["decision"], decided["data"]["card"]["reason"]) == (
        "reject",
        "duplicate",
    )


async def test_the_receiver_refuses_what_is_not_signed_with_its_secret() -> None:
    """The test receiver's own check: a wrong key or an altered body does not verify."""
    body = '{"type":"card.closed","timestamp":"2025-01-01T00:00:00.000Z","data":{}}'
    now = datetime.now(UTC)

    def signed(secret: str, text: str) -> dict[str, str]:
        return {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign("msg_1", now, text),
            "content-type": "application/json",
        }

    other = "whsec_" + base64.b64encode(b"another key, not the receiver's").decode()
    async with receiving(Receiver()) as receiver, httpx.AsyncClient() as client:
        wrong_key = await client.post(
            f"{receiver.url}/hooks", content=body, headers=signed(other, body)
        )
        altered = await client.post(
            f"{receiver.url}/hooks",
            content=body.replace("closed", "decided"),
            headers=signed(SECRET, body),
        )
        right = await client.post(
            f"{receiver.url}/hooks", content=body, headers=signed(SECRET, body)
        )
    assert (wrong_key.status_code, altered.status_code, right.status_code) == (401, 401, 200)
    assert receiver.forged == 2 and len(receiver.received) == 1
