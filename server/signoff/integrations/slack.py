"""Cards that wait on teammates, posted to a Slack channel and kept up to date there.

The first level's ``card.waiting`` posts a message with Approve / Reject buttons;
every later event of the card edits that message, so the channel shows one message
per card with its outcome and who decided each level. Where the message is (channel
and ts) is kept in the store, so whichever instance sees the next event edits it.

Sending happens in the notifier's own task, one card's updates folded into the
newest, so a slow or rate-limited Slack never holds up a turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from signoff.config import SlackSettings
from signoff.engine.notify import CardEvent, EventType
from signoff.integrations.slack_blocks import card_message
from signoff.store import Store

log = logging.getLogger("signoff.slack")

REQUEST_TIMEOUT = 10  # seconds, for one Web API call
# Cards with an update not yet sent; past this, new cards are not posted (and logged).
MAX_PENDING = 1000
# How long the message's whereabouts outlive the card's deadline: long enough for the
# calls to run, or for a sweeper to find the card abandoned.
RECORD_GRACE = 24 * 3600.0
# An update whose message is not posted yet (another instance is posting it) is tried
# again this often, this many times.
POST_WAIT_STEP = 0.5
POST_WAIT_TRIES = 20


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
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        # The newest event of each queued card, and whether its message is still to be posted.
        self._pending: dict[str, tuple[CardEvent, bool]] = {}
        self._tries: dict[str, int] = {}  # cards whose message was not found, and how often
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run())

    def notify(self, event: CardEvent) -> None:
        card = event.card
        if card.approver != "team":
            return  # visitors decide their own cards in the widget
        card_id = card.card_id
        queued = self._pending.get(card_id)
        if queued is None:
            if len(self._pending) >= MAX_PENDING:
                log.warning("Slack is behind; card %s %s not sent", card_id, event.type)
                return
            self._queue.put_nowait(card_id)
        opened = event.type is EventType.CARD_WAITING and card.level == 1 and not card.approvals
        self._pending[card_id] = (event, opened or (queued is not None and queued[1]))

    async def close(self) -> None:
        if self._worker is None:
            return
        try:
            async with asyncio.timeout(self.grace):
                await self._queue.join()
        except TimeoutError:
            log.warning("closing with %d Slack messages not sent", len(self._pending))
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker

    async def _run(self) -> None:
        while True:
            card_id = await self._queue.get()
            event, new = self._pending.pop(card_id)
            try:
                await self._send(event, new)
            except Exception:  # logged, never raised: the next event tries again
                log.exception("Slack message for card %s (%s) failed", card_id, event.type)
            finally:
                self._queue.task_done()

    async def _send(self, event: CardEvent, new: bool) -> None:
        card_id = event.card.card_id
        progress = event.details if event.type is EventType.CALL_EXECUTED else None
        message = card_message(event.resource, progress)
        if new:
            posted = await self.client.chat_postMessage(
                channel=self.channel, text=message.text, blocks=message.blocks
            )
            where = {"channel": posted["channel"], "ts": posted["ts"]}
            await self.store.put_record(
                message_record(card_id), json.dumps(where), self._record_ttl(event)
            )
            return
        raw = await self.store.get_record(message_record(card_id))
        if raw is None:
            self._retry_later(event)
            return
        self._tries.pop(card_id, None)
        where = json.loads(raw)
        await self.client.chat_update(
            channel=where["channel"], ts=where["ts"], text=message.text, blocks=message.blocks
        )

    def _retry_later(self, event: CardEvent) -> None:
        """The card's message may still be being posted, by another instance that saw the
        card open: look for it again shortly rather than leave stale buttons in Slack."""
        card_id = event.card.card_id
        tries = self._tries.get(card_id, 0) + 1
        if tries > POST_WAIT_TRIES:
            self._tries.pop(card_id, None)
            log.info("no Slack message for card %s to update on %s", card_id, event.type)
            return
        self._tries[card_id] = tries
        asyncio.get_running_loop().call_later(POST_WAIT_STEP, self._requeue, event)

    def _requeue(self, event: CardEvent) -> None:
        if event.card.card_id not in self._pending:  # a newer event carries newer news
            self.notify(event)

    @staticmethod
    def _record_ttl(event: CardEvent) -> float:
        # The card's own timeout: never earlier than its deadline, which the session caps.
        return max(event.card.timeout_at - time.time(), 0.0) + RECORD_GRACE
