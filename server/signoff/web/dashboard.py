"""The teammates' dashboard: log in, watch the cards that wait on the team, approve or reject.

Pages are Jinja2 templates (``templates/dashboard/``) made live with htmx (vendored in
``static/``): the card list is polled every couple of seconds, which works the same on any
number of instances. Every form works without JavaScript too. Decisions go through
``Engine.team_decide`` with the level the teammate was shown; posts refused before they get
there (no login, no CSRF token, a foreign Origin, a malformed form) are audited as refused
attempts on the card they name, and change nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from markupsafe import Markup
from sqlalchemy.exc import DataError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from signoff.audit.exports import ExportsBusy
from signoff.audit.query import MAX_PAGE, AuditFilter, read_page
from signoff.core.cards import Card, Status
from signoff.core.conversation import Conversation, tool_content
from signoff.core.deciders import Decider
from signoff.core.display import displayed
from signoff.core.frames import ErrorCode, ProtocolError
from signoff.core.plain_text import control_character
from signoff.core.teammates import TEAMMATE_PREFIX, Channel, Teammate, Verdict, refusal
from signoff.store import StoreUnavailable
from signoff.web.api import audit_csv
from signoff.web.auditview import FORM_CHOICES, AuditForm, FilterError, audit_cells
from signoff.web.csrf import (
    FIELD,
    LOGIN_COOKIE,
    LOGIN_FORM_AGE,
    LoginForms,
    same_origin,
    tokens_match,
)
from signoff.web.incoming import capped_body, client_of, root_path
from signoff.web.logins import COOKIE, LOGIN_TTL, Login, Logins, LoginThrottle
from signoff.web.outages import OUTAGES
from signoff.web.pages import PAGE_HEADERS

log = logging.getLogger("signoff.dashboard")

if TYPE_CHECKING:  # web.app imports this module
    from signoff.web.app import Runtime

BASE = "/dashboard"
# The path signoff is served at, for the templates of the request being answered.
ROOT_PATH: ContextVar[str] = ContextVar("ROOT_PATH", default="")
MAX_FORM_BYTES = 8 * 1024
MAX_REASON = 500
MAX_ID = 64
DECIDED_SHOWN = 20
AUDIT_PAGE = 50
CONVERSATION_ROWS = 2 * MAX_PAGE  # a conversation's rows shown at most; the CSV has all
CONVERSATION_CARDS = 50
SUMMARY_CHARS = 200
UNAUTHENTICATED = "dashboard:unauthenticated"
UNAVAILABLE_LIST = Markup(
    '<p class="notice refused" role="alert">The store is unreachable for now; '
    "this list comes back by itself.</p>"
)
# Nothing but this server's own files (htmx is told not to inject styles or eval), and
# nothing kept: pages show visitors' ids and addresses.
HEADERS = {**PAGE_HEADERS, "Cache-Control": "no-store"}
# How each refusal of Engine.team_decide is answered, page and status.
OUTCOMES = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.ALREADY_DECIDED: 409,
    ErrorCode.EXPIRED: 410,
}

Handler = Callable[[Request], Awaitable[Response]]


class FormError(Exception):
    """A post whose body is not the form it should be; nothing is done with it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_form(request: Request, allowed: set[str], required: set[str]) -> dict[str, str]:
    """The urlencoded form of a post: at most MAX_FORM_BYTES, each field once, no others."""
    body = await capped_body(request, MAX_FORM_BYTES)
    if body is None:
        raise FormError(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if body and kind != "application/x-www-form-urlencoded":
        raise FormError(415, "send the form as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(
            body.decode(), keep_blank_values=True, strict_parsing=bool(body), max_num_fields=20
        )
    except (UnicodeDecodeError, ValueError):
        raise FormError(400, "the form could not be read") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise FormError(400, "a field is given more than once")
    if unexpected := sorted(set(form) - allowed):
        raise FormError(400, f"unexpected fields: {', '.join(unexpected)}")
    if missing := sorted(required - set(form)):
        raise FormError(400, f"missing fields: {', '.join(missing)}")
    return form


def base(request: Request) -> str:
    """The dashboard's own path, under the path signoff is served at."""
    return root_path(request) + BASE


def when(iso: str | None) -> Markup:
    """An ISO 8601 time as a <time> element people can read."""
    if not iso:
        return Markup("")
    return Markup('<time datetime="{0}">{1} UTC</time>').format(iso, iso[:19].replace("T", " "))


def decider(signature: str) -> str:
    """Who decided, as teammates read it: ``teammate:lena`` is lena."""
    return signature.removeprefix(TEAMMATE_PREFIX)


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def level_text(resource: dict[str, Any]) -> str:
    """``2 of 2 · finance``."""
    return f"{resource['level']} of {len(resource['levels'])} · {resource['role']}"


def waiting_since(resource: dict[str, Any]) -> str:
    """When the card reached its current level: opened, or its last level approved."""
    approval = resource["approval"]
    return str(approval["timestamp"] if approval else resource["created_at"])


def transcript(
    conversation: Conversation, sensitive: Callable[[str], frozenset[str]]
) -> list[dict[str, Any]]:
    """The conversation as teammates read it: texts, calls with masked args, results in short."""
    entries: list[dict[str, Any]] = []
    called: dict[str, str] = {}  # tool call id → action
    for message in conversation:
        role, content = message.get("role"), message.get("content")
        if role == "user" and isinstance(content, str):
            entries.append({"kind": "visitor", "text": content})
        elif role == "assistant":
            if content:
                entries.append({"kind": "bot", "text": str(content)})
            for call in message.get("tool_calls") or ():
                name = str(call.get("function", {}).get("name", "?"))
                called[str(call.get("id"))] = name
                try:
                    args = json.loads(call["function"].get("arguments") or "{}")
                except (KeyError, TypeError, json.JSONDecodeError):
                    args = "(arguments that are not JSON)"
                shown = displayed(args, sensitive(name))
                entries.append({"kind": "call", "action": name, "args": as_json(shown)})
        elif role == "tool":
            name = called.get(str(message.get("tool_call_id")), "?")
            result = displayed(tool_content(message), sensitive(name))
            summary = as_json({k: v for k, v in result.items() if k != "status"})
            if len(summary) > SUMMARY_CHARS:
                summary = summary[: SUMMARY_CHARS - 1] + "…"
            status = str(result.get("status", "?"))
            entries.append({"kind": "result", "action": name, "status": status, "text": summary})
    return entries


def decided_message(card: Card, verdict: Verdict) -> str:
    if card.status is Status.WAITING:
        return (
            f"Level {card.level - 1} approved. The card now waits for level "
            f"{card.level} of {len(card.levels)} ({card.role})."
        )
    if verdict is Verdict.APPROVE:
        return "Approved. The calls run now, exactly as shown."
    return "Rejected. Nothing runs; the visitor's bot is told."


class Dashboard:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.logins = Logins(runtime.engine.store)
        self.login_forms = LoginForms(runtime.settings.secret)
        self.throttle = LoginThrottle(runtime.engine.store)

    def routes(self) -> list[Route]:
        def guarded(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                # Read by render: every URL a page holds starts with the path signoff is
                # served at (a host app may mount it at /chat).
                ROOT_PATH.set(root_path(request))
                try:
                    return await handler(request)
                except DataError:  # a value the database cannot hold: the request's fault
                    return self.message(
                        request, 422, "Refused", "The database cannot hold a value you sent."
                    )
                except OUTAGES:
                    log.warning("dashboard request failed", exc_info=True)
                    return self.message(
                        request,
                        503,
                        "Unavailable",
                        "signoff cannot reach its store or database for now; try again shortly.",
                    )

            return endpoint

        return [
            Route(BASE, guarded(self.index)),
            Route(f"{BASE}/cards", guarded(self.live)),
            Route(f"{BASE}/cards/{{card_id}}", guarded(self.card)),
            Route(f"{BASE}/cards/{{card_id}}/decision", guarded(self.decision)),
            Route(f"{BASE}/cards/{{card_id}}/decide", guarded(self.decide), methods=["POST"]),
            Route(f"{BASE}/audit", guarded(self.audit)),
            Route(f"{BASE}/audit/rows", guarded(self.audit_rows)),
            Route(f"{BASE}/audit/older", guarded(self.audit_older)),
            Route(f"{BASE}/audit.csv", guarded(self.audit_export)),
            Route(f"{BASE}/conversations/{{conversation_id}}", guarded(self.conversation)),
            Route(f"{BASE}/login", guarded(self.login_form)),
            Route(f"{BASE}/login", guarded(self.login), methods=["POST"]),
            Route(f"{BASE}/logout", guarded(self.logout), methods=["POST"]),
        ]

    # Rendering ----------------------------------------------------------------------------
    def render(self, template: str, **context: Any) -> Markup:
        return Markup(
            self.runtime.templates.get_template(f"dashboard/{template}").render(
                root=ROOT_PATH.get(),
                when=when,
                as_json=as_json,
                level_text=level_text,
                waiting_since=waiting_since,
                decider=decider,
                **context,
            )
        )

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.render(template, **context), status, headers=HEADERS)

    def message(self, request: Request, status: int, title: str, text: str) -> HTMLResponse:
        """A page (or, for htmx, a fragment) that says what went wrong, and nothing else."""
        template = "_message.html" if "hx-request" in request.headers else "message.html"
        return self.page(template, status, title=title, text=text)

    # Who is asking ------------------------------------------------------------------------
    async def teammate(self, request: Request) -> tuple[Login, Teammate] | None:
        login = await self.logins.find(request.cookies.get(COOKIE))
        if login is None:
            return None
        account = await self.runtime.accounts.teammate(login.name)  # disabled: None
        if account is None or account.stamp != login.stamp:  # or a new password since
            return None
        return login, account.teammate(Channel.DASHBOARD, *client_of(request))

    def to_login(self, request: Request) -> Response:
        if "hx-request" in request.headers:  # htmx follows this with a full page load
            return Response(
                status_code=401, headers={**HEADERS, "HX-Redirect": f"{base(request)}/login"}
            )
        return RedirectResponse(f"{base(request)}/login", 303, headers=HEADERS)

    # Logging in and out -------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        if await self.teammate(request):
            return RedirectResponse(base(request), 303, headers=HEADERS)
        return self.login_page(request)

    def login_page(self, request: Request, status: int = 200, error: str | None = None) -> Response:
        cookie, token = self.login_forms.issue()
        response = self.page("login.html", status, csrf=token, error=error)
        self.set_cookie(request, response, LOGIN_COOKIE, cookie, LOGIN_FORM_AGE)
        return response

    def set_cookie(
        self, request: Request, response: Response, name: str, value: str, max_age: float
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=int(max_age),
            path=base(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    async def login(self, request: Request) -> Response:
        try:
            form = await read_form(request, {"name", "password", FIELD}, {"name", "password"})
        except FormError as exc:
            return self.message(request, exc.status, "Not a login form", exc.message)
        if not same_origin(request) or not self.login_forms.check(
            request.cookies.get(LOGIN_COOKIE), form.get(FIELD)
        ):
            return self.message(
                request,
                403,
                "Login form refused",
                "This login form is stale or was not sent from this dashboard. "
                "Open the login page again and log in from there.",
            )
        name = form["name"].strip()
        if why := control_character(name):
            return self.login_page(request, 400, f"That is not a name: {why}.")
        client = client_of(request)[0] or "?"
        if not await self.throttle.attempt(name, client):
            return self.login_page(
                request, 429, "Too many failed logins. Wait a few minutes and retry."
            )
        account = await self.runtime.accounts.login(name, form["password"])
        if account is None:
            return self.login_page(request, 401, "Wrong name or password.")
        await self.throttle.succeeded(name, client)
        cookie = await self.logins.open(account.name, account.stamp)
        response = RedirectResponse(base(request), 303, headers=HEADERS)
        self.set_cookie(request, response, COOKIE, cookie, LOGIN_TTL)
        response.delete_cookie(LOGIN_COOKIE, path=base(request), httponly=True, samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        try:
            form = await read_form(request, {FIELD}, set())
        except FormError as exc:
            return self.message(request, exc.status, "Not a logout form", exc.message)
        login = await self.logins.find(request.cookies.get(COOKIE))
        if login is not None:
            if not same_origin(request) or not tokens_match(login.csrf, form.get(FIELD)):
                return self.message(
                    request, 403, "Logout refused", "This form was not sent from your dashboard."
                )
            await self.logins.close(request.cookies[COOKIE])
        response = RedirectResponse(f"{base(request)}/login", 303, headers=HEADERS)
        response.delete_cookie(COOKIE, path=base(request), httponly=True, samesite="strict")
        return response

    # Cards --------------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        who = await self.teammate(request)
        if who is None:
            return self.to_login(request)
        login, teammate = who
        live, _ = await self.live_list(teammate)
        return self.page(
            "index.html", teammate=teammate, csrf=login.csrf, live=live, section="cards"
        )

    async def live(self, request: Request) -> Response:
        """The card lists; 204 when they are as the page already shows them (``seen``)."""
        who = await self.teammate(request)
        if who is None:
            return self.to_login(request)
        try:
            live, version = await self.live_list(who[1])
        except StoreUnavailable:  # the list stays, says so, and polling goes on
            version = "unavailable"
            live = self.render("_live.html", lists=UNAVAILABLE_LIST, version=version)
        if request.query_params.get("seen") == version:
            return Response(status_code=204, headers=HEADERS)
        return HTMLResponse(live, headers=HEADERS)

    async def live_list(self, teammate: Teammate) -> tuple[Markup, str]:
        waiting = await self.engine.team_cards(teammate, Status.WAITING)
        recent = await self.engine.team_cards(teammate, limit=len(waiting) + DECIDED_SHOWN)
        decided = [c for c in recent if c.status is not Status.WAITING][:DECIDED_SHOWN]
        shown = await self.engine.describe(*waiting, *decided)  # one store round trip
        yours = [teammate.may_decide(c) for c in waiting]
        lists = self.render(
            "_cards.html",
            waiting=list(zip(shown[: len(waiting)], yours, strict=True)),
            decided=shown[len(waiting) :],
        )
        version = hashlib.sha256(lists.encode()).hexdigest()[:16]
        return self.render("_live.html", lists=lists, version=version), version

    async def card(self, request: Request) -> Response:
        who = await self.teammate(request)
        if who is None:
            return self.to_login(request)
        login, teammate = who
        card = await self.find_card(request.path_params["card_id"], teammate)
        if card is None:
            return self.message(request, 404, "No such card", "There is no card with this id.")
        return await self.card_page(card, login, teammate)

    async def decision(self, request: Request) -> Response:
        """The card page's status and decision part, as it is now: the page polls it while
        the card moves on without this teammate (running, or another's level)."""
        who = await self.teammate(request)
        if who is None:
            return self.to_login(request)
        card = await self.find_card(request.path_params["card_id"], who[1])
        if card is None:
            return self.message(request, 404, "No such card", "There is no card with this id.")
        return await self.card_page(card, *who, fragment=True)

    async def find_card(self, card_id: str, teammate: Teammate) -> Card | None:
        if len(card_id) > MAX_ID:
            return None
        return await self.engine.visible_card(card_id, teammate)

    async def card_page(
        self,
        card: Card,
        login: Login,
        teammate: Teammate,
        status: int = 200,
        outcome: dict[str, str] | None = None,
        fragment: bool = False,
    ) -> Response:
        context = await self.decision_context(card, login, teammate, outcome)
        if fragment:
            return self.page("_decision.html", status, **context)
        conversation = await self.engine.store.load_conversation(card.session_id)
        return self.page(
            "card.html",
            status,
            **context,
            transcript=transcript(conversation, self.engine.sensitive),
        )

    async def decision_context(
        self, card: Card, login: Login, teammate: Teammate, outcome: dict[str, str] | None
    ) -> dict[str, Any]:
        """What the status and decision part of a card page shows."""
        waiting = card.status is Status.WAITING
        not_allowed = refusal(card, teammate) if waiting else None
        return {
            "card": (await self.engine.describe(card))[0],
            "teammate": teammate,
            "csrf": login.csrf,
            "may_decide": waiting and not_allowed is None,
            "not_allowed": not_allowed,
            "outcome": outcome,
            "max_reason": MAX_REASON,
        }

    async def decide(self, request: Request) -> Response:
        card_id = request.path_params["card_id"][:MAX_ID]
        who = await self.teammate(request)
        by = who[1].signature if who else UNAUTHENTICATED

        async def refuse(status: int, title: str, why: str) -> Response:
            decider = Decider.at(by, client_of(request))
            await self.engine.refuse_attempt(card_id, decider, f"dashboard: {why}")
            return self.message(request, status, title, why[:1].upper() + why[1:] + ".")

        try:
            form = await read_form(
                request, {FIELD, "verdict", "level", "reason"}, {"verdict", "level"}
            )
        except FormError as exc:
            return await refuse(exc.status, "Decision refused", exc.message)
        if who is None:
            return await refuse(403, "Not logged in", "log in to decide cards")
        login, teammate = who
        if not same_origin(request):
            return await refuse(403, "Decision refused", "the form was posted from another site")
        if not tokens_match(login.csrf, form.get(FIELD)):
            return await refuse(
                403,
                "Decision refused",
                "the form's CSRF token is missing or not this login's; reload the card",
            )
        try:
            verdict = Verdict(form["verdict"])
            level = int(form["level"])
        except ValueError:
            return await refuse(400, "Decision refused", "verdict or level is not valid")
        reason = form.get("reason", "").strip() or None
        if reason is not None and len(reason) > MAX_REASON:
            return await refuse(
                400, "Decision refused", f"the reason is longer than {MAX_REASON} characters"
            )
        if reason is not None and (why := control_character(reason, free_text=True)):
            return await refuse(400, "Decision refused", f"in the reason, {why}")
        fragment = "hx-request" in request.headers
        try:
            card = await self.engine.team_decide(card_id, verdict, teammate, reason, level)
        except ProtocolError as exc:
            now = await self.find_card(card_id, teammate)
            status = OUTCOMES.get(exc.code, 400)
            if now is None:
                return self.message(request, status, "No such card", exc.message)
            outcome = {"ok": "", "text": _refusal(exc)}
            return await self.card_page(now, login, teammate, status, outcome, fragment)
        outcome = {"ok": "yes", "text": decided_message(card, verdict)}
        return await self.card_page(card, login, teammate, 200, outcome, fragment)

    # The audit log ------------------------------------------------------------------------
    async def audit(self, request: Request) -> Response:
        """The audit page: the filter form, and the newest rows that match it."""
        who = await self.teammate(request)
        if who is None:
            return self.to_login(request)
        login, teammate = who
        results, status, form = await self.audit_results(request, teammate)
        return self.page(
            "audit.html",
            status,
            teammate=teammate,
            csrf=login.csrf,
            section="audit",
            results=results,
            form=form or AuditForm(),  # fields that are not the form's: it starts empty
            **FORM_CHOICES,
        )

    async def audit_rows(self, request: Request) -> Response:
        """The results part of the audit page, for the filter form's htmx requests; the
        browser's address then holds the filters, so the page can be reloaded or shared."""
        who = await self.teammate(request)
        if who is None:
            return self.to_login(request)
        results, status, form = await self.audit_results(request, who[1])
        headers = dict(HEADERS)
        if status == 200 and form is not None:
            query = form.query()
            headers["HX-Push-Url"] = f"{base(request)}/audit" + (f"?{query}" if query else "")
        return HTMLResponse(results, status, headers=headers)

    async def audit_older(self, request: Request) -> Response:
        """The next, older rows (table rows, and the button for the page after them)."""
        who = await self.teammate(request)
        if who is None:
            return self.to_login(request)
        try:
            form = AuditForm.read(request.query_params)
            where, before = form.audit_filter(who[1].sites)
        except FilterError as exc:
            return self.page("_message.html", exc.status, title="Not a filter", text=exc.message)
        rows, cursor = await self.audit_page(where, before)
        return self.page("_audit_rows.html", rows=rows, form=form, cursor=cursor)

    async def audit_export(self, request: Request) -> Response:
        """Every row that matches the filter, oldest first, as a CSV download."""
        who = await self.teammate(request)
        if who is None:
            return self.to_login(request)
        try:
            where, _ = AuditForm.read(request.query_params).audit_filter(who[1].sites)
        except FilterError as exc:
            return self.message(request, exc.status, "Not a filter", exc.message)
        try:
            return await audit_csv(self.runtime, where)
        except ExportsBusy as exc:
            busy = self.message(request, 503, "Exports busy", str(exc))
            busy.headers["Retry-After"] = str(exc.retry_after)
            return busy

    async def audit_results(
        self, request: Request, teammate: Teammate
    ) -> tuple[Markup, int, AuditForm | None]:
        """The results for the request's filter, their status, and the form as read, to
        refill it (None if its fields are not the form's)."""
        form = None
        try:
            form = AuditForm.read(request.query_params)
            where, before = form.audit_filter(teammate.sites)
        except FilterError as exc:
            return self.render("_audit_results.html", error=exc.message), exc.status, form
        rows, cursor = await self.audit_page(where, before)
        results = self.render("_audit_results.html", rows=rows, form=form, cursor=cursor)
        return results, 200, form

    async def audit_page(
        self, where: AuditFilter, before: int | None
    ) -> tuple[list[dict[str, Any]], int | None]:
        page = await read_page(self.runtime.audit.engine, where, AUDIT_PAGE, before)
        return [audit_cells(row) for row in page.rows], page.next_before

    async def conversation(self, request: Request) -> Response:
        """Everything the audit log holds about one conversation, oldest first, and the
        team cards of it that this teammate may open."""
        who = await self.teammate(request)
        if who is None:
            return self.to_login(request)
        login, teammate = who
        conversation_id = request.path_params["conversation_id"]
        if len(conversation_id) > MAX_ID or control_character(conversation_id):
            return self.message(request, 404, "No such conversation", "No audit row names it.")
        where = AuditFilter(conversation=conversation_id, sites=teammate.sites)
        found: list[dict[str, Any]] = []
        before = None
        while len(found) < CONVERSATION_ROWS:
            page = await read_page(self.runtime.audit.engine, where, MAX_PAGE, before)
            found += page.rows
            if (before := page.next_before) is None:
                break
        if not found:
            return self.message(
                request, 404, "No such conversation", "No audit row of a site you cover names it."
            )
        found.reverse()
        card_ids = list(dict.fromkeys(r["card_id"] for r in found if r["card_id"]))
        cards = [
            card
            for card_id in card_ids[:CONVERSATION_CARDS]
            if (card := await self.engine.visible_card(card_id, teammate)) is not None
        ]
        return self.page(
            "conversation.html",
            teammate=teammate,
            csrf=login.csrf,
            section="audit",
            conversation_id=conversation_id,
            site=found[0]["site"],
            rows=[audit_cells(row) for row in found],
            more=before is not None,
            export=AuditForm(values={"conversation": conversation_id}).query(),
            cards=await self.engine.describe(*cards),
        )


def _refusal(exc: ProtocolError) -> str:
    if exc.code is ErrorCode.ALREADY_DECIDED:
        return f"Already decided: {exc.message}. Nothing was changed."
    if exc.code is ErrorCode.EXPIRED:
        return "This card has expired. Nothing runs."
    if exc.code is ErrorCode.FORBIDDEN:
        return f"You may not decide this card: {exc.message}."
    return exc.message
