"""Cards that wait on teammates, posted to a Slack channel and kept up to date there.

The first level's ``card.waiting`` posts a message with Approve / Reject buttons;
every later event of the card edits that message, so the channel shows one message
per card with its outcome and who decided each level. Where the message is (channel
and ts) is kept in the store, so whichever instance sends the next update edits it.

Sending happens in the background, from an outbox in the store split into lanes by
card: a card's updates go out in order (its message is posted before it is edited), a
card's updates that pile up are folded into the newest, and a slow or rate-limited Slack
never holds up a turn. With a shared store, updates queued by an instance that stops are
sent by another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from signoff.config import SlackSettings
from signoff.engine.notify import CardEvent, EventType
from signoff.integrations.outbox import Outbox
from signoff.integrations.slack_blocks import card_message
from signoff.store import Store, StoreUnavailable

log = logging.getLogger("signoff.slack")

REQUEST_TIMEOUT = 10  # seconds, for one Web API call
# Updates not yet sent, in this many lanes; past this, new updates are dropped (and logged).
LANES = 4
MAX_PENDING = 1000
# How long the message's whereabouts outlive the card's deadline: long enough for the
# calls to run, or for a sweeper to find the card abandoned.
RECORD_GRACE = 24 * 3600.0


def slack_client(settings: SlackSettings) -> AsyncWebClient:
    """A Web API client that waits out rate limits and retries dropped connections and
    Slack's own 500/503s (slack_sdk's handlers)."""
    return AsyncWebClient(
        token=settings.bot_token,
        base_url=settings.api_url,
        timeout=REQUEST_TIMEOUT,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=2),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def message_record(card_id: str) -> str:
    return f"slack:{card_id}"


class SlackNotifier:
    grace = 5.0  # seconds close() waits for messages still queued

    def __init__(self, settings: SlackSettings, store: Store):
        self.channel = settings.channel
        self.client = slack_client(settings)
        self.store = store
        self.outbox = Outbox(store, "slack", LANES, MAX_PENDING // LANES, self._send, self._dropped)

    async def start(self) -> None:
        self.outbox.start()

    def notify(self, event: CardEvent) -> None:
        card = event.card
        if card.approver != "team":
            return  # visitors decide their own cards in the widget
        opened = event.type is EventType.CARD_WAITING and card.level == 1 and not card.approvals
        update = {
            "card_id": card.card_id,
            "type": str(event.type),
            "resource": event.resource,
            "progress": event.details if event.type is EventType.CALL_EXECUTED else None,
            "new": opened,  # the card's message is still to be posted
            "timeout_at": card.timeout_at,
        }
        try:
            entry = json.dumps(update, separators=(",", ":"), default=str)
        except Exception:  # must not raise into the turn
            log.exception("Slack: cannot encode %s for card %s", event.type, card.card_id)
            return
        self.outbox.offer(card.card_id, entry)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError, StoreUnavailable):
            async with asyncio.timeout(self.grace):
                await self.outbox.drained()
        left = len(await self.outbox.close())
        with contextlib.suppress(StoreUnavailable):
            waiting = len(await self.outbox.waiting())
            if self.store.outbox_survives:
                if waiting:
                    log.warning("closing; %d Slack updates wait for another instance", waiting)
            else:
                left += waiting
        if left:
            log.warning("closing with %d Slack messages not sent", left)

    def _dropped(self, entry: str) -> None:
        update = json.loads(entry)
        log.warning("Slack is behind; card %s %s not sent", update["card_id"], update["type"])

    async def _send(self, entry: str) -> None:
        update: dict[str, Any] = json.loads(entry)
        card_id = update["card_id"]
        try:
            # Updates of the card waiting behind this one carry newer news: this one is
            # folded into the newest, and a message still to be posted shows the newest.
            lane = self.outbox.lane_of(card_id).name
            behind = [json.loads(e) for e in (await self.store.outbox_entries(lane))[1:]]
            newer = [u for u in behind if u["card_id"] == card_id]
            if newer and not update["new"]:
                return
            if newer:
                update = {**newer[-1], "new": True}
            await self._deliver(update)
        except Exception:  # logged, never raised: the next update tries again
            log.exception("Slack message for card %s (%s) failed", card_id, update["type"])

    async def _deliver(self, update: dict[str, Any]) -> None:
        card_id = update["card_id"]
        message = card_message(update["resource"], update["progress"])
        if update["new"]:
            posted = await self.client.chat_postMessage(
                channel=self.channel, text=message.text, blocks=message.blocks
            )
            where = {"channel": posted["channel"], "ts": posted["ts"]}
            # The card's own timeout: never earlier than its deadline, which the session caps.
            ttl = max(update["timeout_at"] - time.time(), 0.0) + RECORD_GRACE
            await self.store.put_record(message_record(card_id), json.dumps(where), ttl)
            return
        # Posted before: the card's updates go out in order, the post first.
        raw = await self.store.get_record(message_record(card_id))
        if raw is None:
            log.info("no Slack message for card %s to update on %s", card_id, update["type"])
            return
        where = json.loads(raw)
        await self.client.chat_update(
            channel=where["channel"], ts=where["ts"], text=message.text, blocks=message.blocks
        )
