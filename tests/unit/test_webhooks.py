"""Webhook pieces that need no receiver: Retry-After, the payload, the queue bound."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from signoff.config import WebhookSettings
from signoff.core.cards import Card
from signoff.engine.notify import CardEvent, EventType
from signoff.integrations.webhooks import Delivery, Endpoint, payload, retry_after

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


def test_a_full_queue_drops_and_counts() -> None:
    endpoint = Endpoint(WebhookSettings("https://user:pw@hooks.example:8443/in?t=1", SECRET), 1, 1)
    before = REGISTRY.get_sample_value("signoff_webhook_deliveries_total", {"outcome": "dropped"})
    endpoint.offer(Delivery("msg_1", "card.waiting", "c1", "{}"))
    endpoint.offer(Delivery("msg_2", "card.closed", "c1", "{}"))
    after = REGISTRY.get_sample_value("signoff_webhook_deliveries_total", {"outcome": "dropped"})
    assert (after or 0) - (before or 0) == 1
    assert [d.msg_id for d in endpoint.take_undelivered()] == ["msg_1"]
    # Logged by host and path: the URL's credentials and query stay out of the log.
    assert endpoint.name == "https://hooks.example:8443/in"
