"""Builds the ASGI application for a ``Signoff``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from jinja2 import Environment
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from signoff import metrics as signoff_metrics
from signoff.accounts import Accounts
from signoff.app import Signoff
from signoff.assets import asset_dir
from signoff.audit import AuditLog, open_audit
from signoff.audit.upkeep import close_forgotten_cards, purge
from signoff.config import ConfigError, Settings, Site
from signoff.core.bot import Bot
from signoff.core.teammates import METRICS
from signoff.engine import Engine
from signoff.engine.notify import Notifier
from signoff.integrations.webhooks import WebhookNotifier
from signoff.logs import Repeated, withheld
from signoff.store import StoreUnavailable, open_store
from signoff.web.api import PREFIX, ApiError, api_mount, http_error, key_holder, openapi
from signoff.web.dashboard import Dashboard
from signoff.web.health import Health
from signoff.web.incoming import root_path
from signoff.web.limits import VisitorLimits
from signoff.web.measured import MeasuredRequests
from signoff.web.mounting import RefusedUntilStarted, Started
from signoff.web.outages import OUTAGES
from signoff.web.pages import PAGE_HEADERS
from signoff.web.refusals import Refusals
from signoff.web.templating import page_templates
from signoff.web.widget_files import widget_files
from signoff.web.ws import websocket_endpoint

log = logging.getLogger("signoff.web")
# Team cards counted for /metrics at each scrape: enough to alarm on, cheap to read.
WAITING_COUNTED = 1000


@dataclass
class Runtime:
    """What request handlers need, kept on ``app.state.runtime``."""

    engine: Engine
    settings: Settings
    sites: dict[str, Site]
    audit: AuditLog
    accounts: Accounts
    templates: Environment
    limits: VisitorLimits
    refusals: Refusals = field(default_factory=Refusals)

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        return any(site.allows(origin, host) for site in self.sites.values())


def warn_of_split_state(store_url: str) -> None:
    """Say loudly when processes that may be several keep their own sessions: under
    gunicorn (which names itself in SERVER_SOFTWARE) the workers' memory stores are one
    each, and a widget that reconnects to another worker finds its session gone."""
    server = os.environ.get("SERVER_SOFTWARE", "")
    if server.startswith("gunicorn") and store_url.startswith("memory:"):
        log.warning(
            "signoff runs under %s with the memory store: each worker keeps its own "
            "sessions and cards, so with more than one worker a widget that reconnects to "
            "another one finds its session expired. Set SIGNOFF_STORE=redis://... (or run "
            "one worker; docs/deploying.md)",
            server,
        )


async def not_found(request: Request, exc: Exception) -> Response:
    """A path no route serves: in the API's JSON shape under its prefix (a path the API's
    own routes cannot even match, with a line break in it, say), else as plain text."""
    if request.url.path.removeprefix(root_path(request)).startswith(PREFIX + "/"):
        return await http_error(request, exc)
    return PlainTextResponse("Not Found", 404)


def build_app(signoff: Signoff, settings: Settings, bot: Bot) -> Starlette:
    """The server of ``signoff``'s actions and sites, talking through ``bot``: which bot
    that is, is the app's choice (``Signoff.asgi``), never this layer's."""
    sites = {**settings.sites, **signoff.sites}
    for site in sites.values():
        for name in site.page_actions:
            action = signoff.registry.get(name)
            if action is None:
                raise ConfigError(
                    f"sites.{site.name}.page_actions: {name} is not a registered action"
                )
            if action.sums_session:
                # session_sum adds up the calls in the bot's conversation, which a page's
                # calls never enter: from the page, a limit could be split and dodged.
                raise ConfigError(
                    f"sites.{site.name}.page_actions: {name} has a condition with "
                    "session_sum(), which calls from the page would dodge"
                )
    # Opened here, not at first request, so a bad URL stops start-up.
    store = open_store(settings.store)
    audit = open_audit(settings.audit, settings.secret, settings.audit_exports)
    notifiers: list[Notifier] = []
    slack: list[Route] = []
    if settings.slack is not None:
        # Imported here: slack_sdk comes with the slack extra.
        from signoff.integrations.slack import SlackNotifier
        from signoff.web.slack import slack_routes

        notifiers.append(SlackNotifier(settings.slack, store))
        slack = slack_routes(settings.slack)
    if settings.webhooks:
        notifiers.append(WebhookNotifier(settings.webhooks, store))
    engine = Engine(
        registry=signoff.registry,
        bot=bot,
        store=store,
        audit=audit,
        secret=settings.secret,
        session_ttl=settings.session_ttl,
        lease_margin=settings.lease_margin,
        notifiers=notifiers,
        team_reasons=lambda name: name in sites and sites[name].team_reasons_to_bot,
    )
    templates = page_templates(asset_dir("templates"))
    runtime = Runtime(
        engine,
        settings,
        sites,
        audit,
        Accounts(audit.engine, settings.admin_key),
        templates,
        VisitorLimits(settings.address_message_rate, settings.address_session_rate),
    )
    widget = asset_dir("widget")

    skipped_sweeps = Repeated(log)
    # Set at shutdown. The loops below end on it as well as on being cancelled: a client
    # library that turns a cancellation into a connection error (which they catch and
    # carry on from) would otherwise keep them going after the server stopped.
    stopping = asyncio.Event()

    async def sweeper() -> None:
        while not stopping.is_set():
            await asyncio.sleep(settings.sweep_interval)
            try:
                await engine.sweep()
            except StoreUnavailable as exc:
                skipped_sweeps.warning("sweep skipped: %s", exc)  # the next one catches up
            except Exception as exc:  # expiring a card resumes its turn: the bot's errors too
                log.error("sweep failed\n%s", withheld(exc))
            else:
                skipped_sweeps.ended()

    retention = settings.retention()

    async def purger() -> None:
        """Audit rows past their site's retention go, every ``audit_purge_interval``.
        Instances may purge at once: each site's purge holds its chain's lock."""
        while not stopping.is_set():
            await asyncio.sleep(settings.audit_purge_interval)
            try:
                purged = await purge(audit.engine, retention, datetime.now(UTC))
            except Exception:
                log.exception("audit purge failed")  # the next one catches up
                continue
            for site, count in purged.items():
                if count:
                    log.info("audit: purged %d rows of site %s past retention", count, site)

    running = Started()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        warn_of_split_state(settings.store)
        await store.start()
        await audit.start()
        if settings.store.startswith("memory:"):
            forgotten = await close_forgotten_cards(audit, datetime.now(UTC))
            if forgotten:
                log.warning(
                    "closed %d cards of an earlier run as interrupted in the audit log: the "
                    "memory store keeps nothing across restarts (SIGNOFF_STORE=redis://... does)",
                    forgotten,
                )
        for notifier in notifiers:
            await notifier.start()
        tasks = [asyncio.create_task(sweeper()), asyncio.create_task(purger())]
        try:
            # Left after the turns drain, so calls still running have what they need.
            async with contextlib.AsyncExitStack() as serving:
                for needed in signoff.while_serving:
                    await serving.enter_async_context(needed())
                running.started = True
                try:
                    yield
                finally:
                    running.started = False
                    stopping.set()
                    for task in tasks:
                        task.cancel()
                    await engine.drain()
        finally:
            stopping.set()
            for task in tasks:  # also when something the app needs could not start
                task.cancel()
            await engine.close()
            for notifier in notifiers:
                await notifier.close()
            await audit.close()
            await store.close()

    async def widget_js(request: Request) -> Response:
        return widget_files(widget).script.response(request)

    async def widget_css(request: Request) -> Response:
        return widget_files(widget).stylesheet.response(request)

    async def demo(request: Request) -> Response:
        if "demo" not in runtime.sites:
            return PlainTextResponse("no demo site is configured", status_code=404)
        page = templates.get_template("demo.html").render(site="demo", root=root_path(request))
        return HTMLResponse(page, headers=PAGE_HEADERS)

    async def favicon(request: Request) -> Response:
        # Browsers ask for /favicon.ico of every page's host; the icon is an SVG.
        return RedirectResponse(root_path(request) + "/static/favicon.svg", 301)

    health = Health(store, audit)

    async def healthz(request: Request) -> Response:
        """Ok when the store and the audit database both answer (every turn needs both);
        otherwise 503, naming which, and a load balancer takes the instance out."""
        if down := await health.down():
            return JSONResponse({"status": "unavailable", "unavailable": down}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        """The Prometheus metrics, for an API key with the metrics role: they tell how busy
        the server is and what fails, which is no one else's business."""
        try:
            account = await key_holder(runtime.accounts, request)
        except ApiError as exc:
            return PlainTextResponse(exc.message, exc.status, headers=exc.headers)
        except OUTAGES:
            return PlainTextResponse("the audit database is unavailable", 503)
        if METRICS not in account.roles:
            return PlainTextResponse(f"this needs a key with the role {METRICS}", 403)
        try:
            waiting = await store.waiting_cards(WAITING_COUNTED)
        except StoreUnavailable:
            pass  # the store's own counter says so; these keep their last values
        else:
            signoff_metrics.team_cards_waiting.set(len(waiting))
            oldest = engine.clock() - waiting[0].created_at if waiting else 0.0
            signoff_metrics.oldest_team_card_wait.set(max(oldest, 0.0))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        WebSocketRoute("/ws", websocket_endpoint),
        Route("/widget.js", widget_js),
        Route("/widget.css", widget_css),
        Route("/demo", demo),
        Route("/healthz", healthz),
        Route("/favicon.ico", favicon),
        Route("/metrics", metrics),
        # Where API tools look first; the same document as /api/v1/openapi.json.
        Route("/openapi.json", openapi),
        *slack,
        *Dashboard(runtime).routes(),
        api_mount(runtime),
        Mount("/static", StaticFiles(directory=asset_dir("static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found},
        middleware=[
            Middleware(MeasuredRequests, routes=routes),
            Middleware(RefusedUntilStarted, state=running),
        ],
    )
    app.state.runtime = runtime
    return app
