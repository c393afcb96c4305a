"""Outgoing webhooks: card events, signed per Standard Webhooks, sent with retries.

Each endpoint has its own bounded outbox in the store, split into lanes. All events of
one card take the same lane and a lane sends one event at a time, retries included, so
a card's events arrive in order; a receiver that keeps failing on one card holds up only
its lane. The engine only ever queues: a slow or dead receiver never holds up a turn.
With a shared store (Redis), events queued by an instance that stops are sent by another.

Delivery is at least once: an answer lost on the way back, or an instance stopping while
it sends, means the event comes again, with the same ``webhook-id``, which receivers use
to drop repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from signoff import metrics
from signoff.config import WebhookSettings
from signoff.engine.notify import CardEvent
from signoff.integrations.outbox import Outbox
from signoff.store import Store, StoreUnavailable

log = logging.getLogger("signoff.webhooks")

LANES = 4
QUEUE_SIZE = 1000  # events waiting per endpoint; more are dropped, and logged
# Answers worth asking again: timeouts, rate limits, and the receiver's own failures.
RETRY_STATUSES = {408, 429}


@dataclass(frozen=True)
class Delivery:
    """One event for one endpoint: the same id and body on every attempt."""

    msg_id: str
    type: str
    card_id: str
    body: str

    def entry(self) -> str:
        """As kept in the outbox."""
        return json.dumps([self.msg_id, self.type, self.card_id, self.body])

    @classmethod
    def from_entry(cls, entry: str) -> Delivery:
        msg_id, type_, card_id, body = json.loads(entry)
        return cls(msg_id, type_, card_id, body)


class Retryable(Exception):
    """An attempt failed in a way another attempt may not; ``retry_after`` in seconds."""

    def __init__(self, why: str, retry_after: float | None = None) -> None:
        super().__init__(why)
        self.retry_after = retry_after


class Refused(Exception):
    """The receiver answered that this event will never be accepted (a 4xx, a redirect)."""


class HonourRetryAfter(wait_base):
    """Wait what the receiver asked for in Retry-After, if longer than the backoff."""

    def __init__(self, backoff: wait_base, cap: float) -> None:
        self.backoff = backoff
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        asked = failure.retry_after if isinstance(failure, Retryable) else None
        return min(max(asked or 0.0, self.backoff(retry_state)), self.cap)


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; a naive one is taken as such
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def payload(event: CardEvent, now: datetime) -> str:
    """The body every endpoint gets: ``{"type", "timestamp", "data": {"card", ...details}}``."""
    message = {
        "type": str(event.type),
        "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": {"card": event.resource, **event.details},
    }
    # default=str: a detail that is not JSON is sent as text rather than lost.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)


class Endpoint:
    """One receiver: its outbox, signing key and retry policy."""

    def __init__(
        self,
        hook: WebhookSettings,
        store: Store,
        lanes: int = LANES,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.hook = hook
        self.client: httpx.AsyncClient | None = None  # given by start()
        self.signer = Webhook(hook.secret)
        url = urlsplit(hook.url)
        # Logged instead of the URL, which may carry a token in its query or userinfo.
        self.name = f"{url.scheme}://{url.netloc.rpartition('@')[2]}{url.path}"
        # Named by the URL, so every instance of a deployment works the same lanes; hashed,
        # so a token in the URL is not kept in the store.
        box = "webhooks:" + hashlib.sha256(hook.url.encode()).hexdigest()[:16]
        self.outbox = Outbox(
            store, box, lanes, max(1, queue_size // lanes), self._send, self._dropped
        )
        self.policy = AsyncRetrying(
            stop=stop_after_attempt(hook.attempts),
            wait=HonourRetryAfter(
                wait_exponential(multiplier=hook.backoff, max=hook.max_backoff)
                + wait_random(0, hook.backoff),
                cap=hook.max_backoff,
            ),
            retry=retry_if_exception_type(Retryable),
            before_sleep=self._retrying,
            reraise=True,
        )

    def start(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.outbox.start()

    def offer(self, delivery: Delivery) -> None:
        self.outbox.offer(delivery.card_id, delivery.entry())

    def _dropped(self, entry: str) -> None:
        delivery = Delivery.from_entry(entry)
        metrics.webhook_deliveries.labels("dropped").inc()
        log.error(
            "webhook %s: queue full, dropped %s %s for card %s",
            self.name,
            delivery.type,
            delivery.msg_id,
            delivery.card_id,
        )

    async def _send(self, entry: str) -> None:
        assert self.client is not None, "sent before start()"
        await self.deliver(Delivery.from_entry(entry), self.client)

    async def deliver(self, delivery: Delivery, client: httpx.AsyncClient) -> None:
        """Send until accepted, refused or out of attempts; never raises but to cancel."""
        try:
            # A copy per delivery: tenacity keeps a call's state on the retrying object.
            await self.policy.copy()(self.attempt, delivery, client)
        except Refused as exc:
            outcome, why = "refused", str(exc)
        except Retryable as exc:
            outcome, why = "failed", f"{exc} after {self.hook.attempts} attempts"
        except Exception as exc:  # a bug here must not end the lane
            log.exception("webhook %s: %s could not be sent", self.name, delivery.msg_id)
            outcome, why = "failed", repr(exc)
        else:
            metrics.webhook_deliveries.labels("delivered").inc()
            return
        metrics.webhook_deliveries.labels(outcome).inc()
        log.error(
            "webhook %s: %s %s for card %s not delivered: %s",
            self.name,
            delivery.type,
            delivery.msg_id,
            delivery.card_id,
            why,
        )

    async def attempt(self, delivery: Delivery, client: httpx.AsyncClient) -> None:
        # Signed afresh each time: receivers refuse timestamps more than minutes old.
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer.sign(delivery.msg_id, now, delivery.body),
        }
        try:
            response = await client.post(
                self.hook.url,
                content=delivery.body.encode(),
                headers=headers,
                timeout=self.hook.timeout,
            )
        except httpx.TransportError as exc:  # refused, reset, timed out
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        why = f"HTTP {status}"
        if status in RETRY_STATUSES or status >= 500:
            raise Retryable(why, retry_after(response.headers.get("retry-after"), now))
        raise Refused(why)

    def _retrying(self, retry_state: RetryCallState) -> None:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        delivery: Delivery = retry_state.args[0]
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        log.warning(
            "webhook %s: %s attempt %d failed (%s); next in %.1fs",
            self.name,
            delivery.msg_id,
            retry_state.attempt_number,
            failure,
            wait,
        )


class WebhookNotifier:
    """A Notifier that posts each card event to every endpoint that asked for its type."""

    # How long close() lets queued events go out before leaving them.
    grace: float = 5.0

    def __init__(self, hooks: Sequence[WebhookSettings], store: Store) -> None:
        self.store = store
        self.endpoints = [Endpoint(hook, store) for hook in hooks]
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        # No redirects: a signed event goes only where it was configured to go.
        self.client = httpx.AsyncClient(follow_redirects=False)
        for endpoint in self.endpoints:
            endpoint.start(self.client)

    def notify(self, event: CardEvent) -> None:
        wanted = [e for e in self.endpoints if event.type in e.hook.events]
        if not wanted:
            return
        try:
            body = payload(event, datetime.now(UTC))
        except Exception:  # must not raise into the turn
            log.exception("webhook: cannot encode %s for card %s", event.type, event.card.card_id)
            return
        for endpoint in wanted:
            # One id per event and endpoint, kept on every retry, for receivers to dedupe.
            msg_id = f"msg_{uuid.uuid4().hex}"
            endpoint.offer(Delivery(msg_id, str(event.type), event.card.card_id, body))

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError, StoreUnavailable):
            async with asyncio.timeout(self.grace):
                await asyncio.gather(*(e.outbox.drained() for e in self.endpoints))
        for endpoint in self.endpoints:
            # Never handed to the store: lost with this process.
            left = await endpoint.outbox.close()
            try:
                waiting = await endpoint.outbox.waiting()
            except StoreUnavailable:
                waiting = []
            if self.store.outbox_survives:
                if waiting:
                    log.warning(
                        "webhook %s: shutting down; %d events wait for another instance",
                        endpoint.name,
                        len(waiting),
                    )
            else:
                left += waiting
            for entry in left:
                delivery = Delivery.from_entry(entry)
                metrics.webhook_deliveries.labels("abandoned").inc()
                log.error(
                    "webhook %s: shutting down; %s %s for card %s not delivered",
                    endpoint.name,
                    delivery.type,
                    delivery.msg_id,
                    delivery.card_id,
                )
        if self.client is not None:
            await self.client.aclose()
