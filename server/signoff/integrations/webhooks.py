"""Outgoing webhooks: card events, signed per Standard Webhooks, sent with retries.

Each endpoint has its own bounded queue, split into lanes. All events of one card take
the same lane and a lane sends one event at a time, retries included, so a card's events
arrive in order; a receiver that keeps failing on one card holds up only its lane. The
engine only ever queues: a slow or dead receiver never holds up a turn.

Delivery is at least once: an answer lost on the way back means the event comes again,
with the same ``webhook-id``, which receivers use to drop repeats.
"""

from __future__ import annotations

import asyncio
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
    """One receiver: its queue, lanes, signing key and retry policy."""

    def __init__(
        self, hook: WebhookSettings, lanes: int = LANES, queue_size: int = QUEUE_SIZE
    ) -> None:
        self.hook = hook
        self.signer = Webhook(hook.secret)
        url = urlsplit(hook.url)
        # Logged instead of the URL, which may carry a token in its query or userinfo.
        self.name = f"{url.scheme}://{url.netloc.rpartition('@')[2]}{url.path}"
        self.lanes: list[asyncio.Queue[Delivery]] = [
            asyncio.Queue(max(1, queue_size // lanes)) for _ in range(lanes)
        ]
        self.sending: list[Delivery | None] = [None] * lanes
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

    def offer(self, delivery: Delivery) -> None:
        lane = self.lanes[hash(delivery.card_id) % len(self.lanes)]
        try:
            lane.put_nowait(delivery)
        except asyncio.QueueFull:
            metrics.webhook_deliveries.labels("dropped").inc()
            log.error(
                "webhook %s: queue full, dropped %s %s for card %s",
                self.name,
                delivery.type,
                delivery.msg_id,
                delivery.card_id,
            )

    async def run_lane(self, index: int, client: httpx.AsyncClient) -> None:
        lane = self.lanes[index]
        while True:
            delivery = await lane.get()
            self.sending[index] = delivery
            try:
                await self.deliver(delivery, client)
            finally:
                self.sending[index] = None
                lane.task_done()

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

    def take_undelivered(self) -> list[Delivery]:
        """What is being sent or waits, emptying the queue; at shutdown."""
        left = [delivery for delivery in self.sending if delivery is not None]
        for lane in self.lanes:
            while not lane.empty():
                left.append(lane.get_nowait())
                lane.task_done()
        return left


class WebhookNotifier:
    """A Notifier that posts each card event to every endpoint that asked for its type."""

    # How long close() lets queued events go out before giving up on them.
    grace: float = 5.0

    def __init__(self, hooks: Sequence[WebhookSettings]) -> None:
        self.endpoints = [Endpoint(hook) for hook in hooks]
        self.client: httpx.AsyncClient | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        # No redirects: a signed event goes only where it was configured to go.
        self.client = httpx.AsyncClient(follow_redirects=False)
        for endpoint in self.endpoints:
            for index in range(len(endpoint.lanes)):
                task = asyncio.create_task(endpoint.run_lane(index, self.client))
                self.tasks.append(task)

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
        lanes = [lane.join() for endpoint in self.endpoints for lane in endpoint.lanes]
        try:
            async with asyncio.timeout(self.grace):
                await asyncio.gather(*lanes)
        except TimeoutError:
            pass  # what is left is logged below
        # Taken before the lanes stop, while what they were sending is still known.
        left = [(endpoint, d) for endpoint in self.endpoints for d in endpoint.take_undelivered()]
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
        for endpoint, delivery in left:
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
