"""Webhook pieces that need no receiver: Retry-After, the payload, the queue bound."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx
from prometheus_client import REGISTRY

from signoff.config import WebhookSettings
from signoff.core.cards import Card
from signoff.engine.notify import CardEvent, EventType
from signoff.integrations.webhooks import Delivery, Endpoint, payload, retry_after
from signoff.store.memory import MemoryStore

SECRET = "whsec_" + base64.b64encode(b"signoff webhook test key 32 bytes").decode()
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after("120", NOW) == 120.0
    assert retry_after("Sat, 01 Mar 2025 12:00:30 GMT", NOW) == 30.0
    assert retry_after("Sat, 01 Mar 2025 11:00:00 GMT", NOW) == 0.0  # already past
    assert retry_after("soon", NOW) is None
    assert retry_after(None, NOW) is None


def test_the_payload_has_the_standard_webhooks_shape() -> None:
    card = Card.__new__(Card)  # only the resource is sent; the card is not read
    event = CardEvent(
        EventType.CALL_EXECUTED,
        card,
        {"card_id": "c1", "status": "running"},
        {"index": 0, "result": {"action": "refund", "status": "done"}},
    )
    assert json.loads(payload(event, NOW)) == {
        "type": "call.executed",
        "timestamp": "2025-03-01T12:00:00.000Z",
        "data": {
            "card": {"card_id": "c1", "status": "running"},
            "index": 0,
            "result": {"action": "refund", "status": "done"},
        },
    }


async def test_a_full_queue_drops_and_counts() -> None:
    store = MemoryStore()
    endpoint = Endpoint(
        WebhookSettings("https://user:pw@hooks.example:8443/in?t=1", SECRET), store, 1, 1
    )
    (lane,) = endpoint.outbox.lanes
    # Another instance works the lane (and is slow): what is offered here waits.
    assert await store.outbox_lease(lane.name, "elsewhere", 60)
    async with httpx.AsyncClient() as client:
        endpoint.start(client)
        before = REGISTRY.get_sample_value(
            "signoff_webhook_deliveries_total", {"outcome": "dropped"}
        )
        endpoint.offer(Delivery("msg_1", "card.waiting", "c1", "{}"))
        endpoint.offer(Delivery("msg_2", "card.closed", "c1", "{}"))
        await lane.unsent.join()
        after = REGISTRY.get_sample_value(
            "signoff_webhook_deliveries_total", {"outcome": "dropped"}
        )
        assert (after or 0) - (before or 0) == 1
        waiting = await endpoint.outbox.waiting()
        assert [Delivery.from_entry(e).msg_id for e in waiting] == ["msg_1"]
        assert await endpoint.outbox.close() == []
    # Logged by host and path: the URL's credentials and query stay out of the log.
    assert endpoint.name == "https://hooks.example:8443/in"
    # Kept in the store under a name that does not show the URL's token either.
    assert "pw" not in lane.name and "t=1" not in lane.name
