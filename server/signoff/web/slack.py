"""``POST /slack/interactions``: Approve / Reject clicks on signoff's Slack messages.

Slack signs every request with the app's signing secret over its timestamp and body.
The signature is checked on the raw bytes before anything else: a forged or stale request
gets 401 and is logged, its body never parsed (so no payload, however built, reaches a
parser unsigned). A signed request that is not a click signoff asked for gets 400 and,
when it names a real card, a refused row in the audit log. A genuine click decides as the
teammate linked to the clicking Slack user, through the same exactly-once claim as the
dashboard.
Slack wants an answer within 3 seconds: the decision is answered once claimed, and
the channel message is edited by the Slack notifier as the card moves on.
"""

from __future__ import annotations

import logging
import re
import time

from slack_sdk.signature import SignatureVerifier
from starlette.background import BackgroundTask
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from signoff.config import SlackSettings
from signoff.core.deciders import Decider
from signoff.core.frames import ErrorCode, ProtocolError
from signoff.core.teammates import Channel
from signoff.engine import Engine
from signoff.integrations.slack import slack_client
from signoff.integrations.slack_blocks import BadClick, Click, escape, parse_click
from signoff.web.incoming import capped_body, client_of
from signoff.web.outages import OUTAGES

log = logging.getLogger("signoff.slack")
UNAVAILABLE = "signoff cannot reach its store or database; try again in a moment."

# Interaction payloads carry the whole message clicked on; signoff's stay well below this.
MAX_BODY = 256 * 1024
# Seconds a signed request stays acceptable, as Slack advises. slack_sdk's verifier checks the
# same window; it is checked here first so a stale request is logged as stale, not forged.
REPLAY_WINDOW = 5 * 60
_TIMESTAMP = re.compile(r"\d{1,12}", re.ASCII)

NOT_LINKED = (
    "Your Slack account is not linked to a signoff teammate, so your click was not "
    "recorded. Ask an admin to link it."
)


def slack_routes(settings: SlackSettings) -> list[Route]:
    """The interactivity endpoint of the Slack app."""
    return [Route("/slack/interactions", SlackInteractions(settings).handle, methods=["POST"])]


class SlackInteractions:
    def __init__(self, settings: SlackSettings) -> None:
        self.verifier = SignatureVerifier(settings.signing_secret)
        self.client = slack_client(settings)
        self.channel = settings.channel

    async def handle(self, request: Request) -> Response:
        engine = request.app.state.runtime.engine
        body = await capped_body(request, MAX_BODY)
        if body is None:
            return PlainTextResponse("request body too large", status_code=413)
        refused = self._unverified(body, request.headers)
        if refused is not None:
            log.warning("refused a Slack request from %s: %s", client_of(request)[0], refused)
            return PlainTextResponse(refused, status_code=401)
        try:
            click = parse_click(body)
        except BadClick as bad:
            if bad.card_id is not None:
                who = Decider.at(f"slack:{bad.user_id or 'unknown'}", client_of(request))
                await _refuse(engine, bad.card_id, who, str(bad))
            return PlainTextResponse(str(bad), status_code=400)
        return await self._decide(request, click)

    def _unverified(self, body: bytes, headers: Headers) -> str | None:
        """Why the request is not Slack's, or None when its signature checks out."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not _TIMESTAMP.fullmatch(timestamp) or not signature:
            return "no valid Slack signature headers"
        if abs(time.time() - int(timestamp)) > REPLAY_WINDOW:
            return "stale Slack request timestamp"
        if not self.verifier.is_valid(body, timestamp, signature):
            return "bad Slack signature"
        return None

    async def _decide(self, request: Request, click: Click) -> Response:
        runtime = request.app.state.runtime
        engine = runtime.engine
        try:
            account = await runtime.accounts.slack_teammate(click.user_id)
        except OUTAGES:
            log.warning("Slack click not checked", exc_info=True)
            return self._tell(click, UNAVAILABLE)
        client = client_of(request)
        if account is None:
            who = Decider.at(f"slack:{click.user_id}", client, click.level)
            await _refuse(engine, click.card_id, who, "not a linked teammate")
            return self._tell(click, NOT_LINKED)
        teammate = account.teammate(Channel.SLACK, *client)
        try:
            await engine.team_decide(click.card_id, click.verdict, teammate, level=click.level)
        except ProtocolError as exc:
            if exc.code != ErrorCode.FORBIDDEN:  # the engine audits forbidden ones itself
                await _refuse(engine, click.card_id, teammate.decider(click.level), exc.message)
            return self._tell(click, f"Not recorded: {exc.message}.")
        except OUTAGES:
            log.warning("Slack decision failed", exc_info=True)
            return self._tell(click, UNAVAILABLE)
        return Response(status_code=200)

    def _tell(self, click: Click, text: str) -> Response:
        """Answer at once; tell only the clicking user why, leaving the channel message alone."""
        return Response(status_code=200, background=BackgroundTask(self._ephemeral, click, text))

    async def _ephemeral(self, click: Click, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(
                channel=click.channel_id or self.channel, user=click.user_id, text=escape(text)
            )
        except Exception:  # the decision stands either way; only the note is lost
            log.exception("could not tell Slack user %s: %s", click.user_id, text)


async def _refuse(engine: Engine, card_id: str, by: Decider, why: str) -> None:
    try:
        await engine.refuse_attempt(card_id, by, f"slack: {why}")
    except OUTAGES:
        log.warning(
            "refused a Slack request by %s on card %s (%s); store down", by.signature, card_id, why
        )
