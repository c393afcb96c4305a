"""The REST API under ``/api/v1``: machines decide and read cards that wait on teammates,
host backends sign user tokens, admins manage API keys.

Every request but the OpenAPI document's carries ``Authorization: Bearer <key>``. Every
answer is JSON; errors have one shape, ``{"success": false, "error": {"code", "message"}}``.
Bodies are read strictly (a size cap, JSON only, exact types, no field a model does not
name), so nothing a client adds reaches an action. One table of endpoints drives both
the routes and the OpenAPI document, and the document's schemas are the models' own.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from sqlalchemy.exc import DataError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from signoff import __version__
from signoff.accounts import (
    Account,
    AccountError,
    AccountExists,
    AccountForbidden,
    Accounts,
    KeyInfo,
    parse_key_id,
)
from signoff.audit.entries import AuditStatus
from signoff.audit.exports import ExportsBusy
from signoff.audit.query import MAX_PAGE, AuditFilter, csv_chunks, read_page
from signoff.config import SITE_PATTERN
from signoff.core import strict_json
from signoff.core.cards import Status
from signoff.core.deciders import Decider
from signoff.core.frames import (
    IDENTIFIER_PATTERN,
    ErrorCode,
    ProtocolError,
    describe_invalid,
    iso,
)
from signoff.core.plain_text import FREE_TEXT, NAME
from signoff.core.teammates import (
    ADMIN,
    HOST,
    MACHINE_ROLES,
    NAME_PATTERN,
    ROLE_PATTERN,
    Channel,
    Teammate,
    Verdict,
)
from signoff.core.tokens import MAX_USER_ID, MAX_USER_TOKEN_TTL, TokenError, sign_user_token
from signoff.web.downloads import Download
from signoff.web.incoming import capped_body, client_of
from signoff.web.outages import OUTAGES

if TYPE_CHECKING:
    from signoff.web.app import Runtime

log = logging.getLogger("signoff.api")

PREFIX = "/api/v1"
MAX_BODY_BYTES = 16 * 1024
MAX_KEY_CHARS = 512  # far longer than any key signoff makes
MAX_REASON_CHARS = 1000
UNAUTHENTICATED = "api:unauthenticated"  # who refused attempts without a valid key were by
CARD_ID = re.compile(IDENTIFIER_PATTERN)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="signoff"'}
OPENAPI_PATH = "/openapi.json"


# Requests ---------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


Role = Annotated[str, Field(pattern=ROLE_PATTERN.pattern)]
SiteName = Annotated[str, Field(pattern=SITE_PATTERN.pattern)]


class ResumeRequest(_Body):
    """A decision on the level of the card that waits now."""

    # Not strict: bodies are validated as parsed, and a strict enum takes only its members.
    decision: Annotated[Verdict, Field(strict=False)]
    reason: Annotated[str, Field(max_length=MAX_REASON_CHARS), FREE_TEXT] | None = Field(
        None, description="Why; kept with the decision, shown to teammates, not to the visitor."
    )


class UserTokenRequest(_Body):
    """A user token for a host page, so the widget acts as that user."""

    user_id: Annotated[str, Field(min_length=1, max_length=MAX_USER_ID), NAME]
    ttl: Annotated[float, Field(gt=0, le=MAX_USER_TOKEN_TTL)] = Field(
        300.0, description="Seconds it stays valid."
    )
    site: SiteName | None = Field(None, description="Only valid for this configured site.")


class KeyRequest(_Body):
    """A new API key: what it is for, and the roles it holds."""

    # Control characters are named as such here; Accounts.create_key holds the rule of
    # teammates' names (for the command line too), stated here for the document.
    name: Annotated[str, Field(min_length=1, max_length=64), NAME] = Field(
        description="What it is for (refund-desk): its decisions are signed teammate:key:<name>.",
        json_schema_extra={"pattern": NAME_PATTERN.pattern},
    )
    roles: Annotated[list[Role], Field(min_length=1, max_length=32)]
    sites: Annotated[list[SiteName], Field(min_length=1, max_length=64)] | None = Field(
        None, description="Only these sites' cards and users; every site if left out."
    )


class CardsQuery(BaseModel):
    # Query values are text, so not strict: limit=20 is a number.
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status | None = Field(None, description="Only cards with this status.")
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


AUDIT_STATUSES = tuple(str(s) for s in AuditStatus)
# A comma-separated list of them, as the OpenAPI document states it (the validator below
# names an unknown one).
_ONE_STATUS = "|".join(AUDIT_STATUSES)
STATUS_LIST = f"^({_ONE_STATUS})(,({_ONE_STATUS}))*$"
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


def _iso_time(value: Any) -> Any:
    """Times in ISO 8601 only: pydantic would also read a number as seconds since 1970."""
    if not isinstance(value, str) or not ISO_TIME.match(value):
        raise ValueError("expected a time in ISO 8601 with an offset, like 2026-12-04T09:30:00Z")
    return value


IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_time)]
MAX_FILTER_CHARS = 200  # ids are 64 at most; action and decider names are short
FilterText = Annotated[str, Field(min_length=1, max_length=MAX_FILTER_CHARS), NAME]


class AuditQuery(BaseModel):
    """Which audit rows to read; every parameter given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: str | None = Field(
        None,
        description="Any of these statuses, comma-separated: " + ", ".join(AUDIT_STATUSES) + ".",
        json_schema_extra={"examples": ["cancelled,rejected"], "pattern": STATUS_LIST},
    )
    since: IsoTime | None = Field(
        None, description="Rows at or after this time: ISO 8601 with an offset (Z or +hh:mm)."
    )
    until: IsoTime | None = Field(
        None, description="Rows before this time: ISO 8601 with an offset (Z or +hh:mm)."
    )
    conversation: FilterText | None = Field(None, description="One conversation's rows.")
    session: FilterText | None = Field(None, description="One session's rows.")
    card: FilterText | None = Field(None, description="One card's rows.")
    action: FilterText | None = Field(None, description="One action's rows.")
    decided_by: FilterText | None = Field(
        None,
        description="auto, visitor or teammate (any of that sort), or one decider exactly, "
        "as rows sign it: user:<id> or teammate:<name>.",
    )
    site: SiteName | None = Field(None, description="One site's rows (one the key covers).")
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = Field(
        50, description="Rows per page (JSON only)."
    )
    before: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,17}$")] | None = Field(
        None, description="The cursor of the page to read: a previous answer's `next` (JSON only)."
    )
    format: Literal["json", "csv"] = Field(
        "json",
        description="csv: every matching row, oldest first, streamed; limit and before "
        "do not apply.",
    )

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = value.split(",")
        if unknown := [n for n in names if n not in AUDIT_STATUSES]:
            raise ValueError(
                f"unknown status {unknown[0]!r}; use any of {', '.join(AUDIT_STATUSES)}"
            )
        return value

    @model_validator(mode="after")
    def _period(self) -> AuditQuery:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since is after until")
        return self

    def statuses(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.status.split(","))) if self.status else ()

    def audit_filter(self, sites: frozenset[str] | None) -> AuditFilter:
        """The filter for a reader who may see ``sites`` (None: every site); a site the
        reader does not cover is refused, not answered with nothing."""
        if self.site is not None and sites is not None and self.site not in sites:
            raise ApiError(403, "forbidden", f"this key is not for the site {self.site!r}")
        return AuditFilter(
            statuses=self.statuses(),
            since=self.since,
            until=self.until,
            conversation=self.conversation,
            session=self.session,
            card=self.card,
            action=self.action,
            decided_by=self.decided_by,
            site=self.site,
            sites=sites,
        )


# Responses: what the handlers send, for the document (a test holds answers to them) -----
class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Out):
    code: str
    message: str


class ErrorResponse(_Out):
    success: Literal[False]
    error: ErrorDetail


class Approval(_Out):
    """One teammate's decision on one level."""

    level: int
    role: str
    decision: Verdict
    by: str
    principal: str | None = Field(
        None,
        description="Who the decision counts as for four eyes: by, or for a key made through "
        "another account, whoever made it. No two levels of a card have the same one.",
    )
    channel: Channel
    timestamp: str
    reason: str | None


class CardField(_Out):
    name: str
    label: str
    value: str = Field(description="The argument in words, as the action formats it.")


class CardAction(_Out):
    action: str
    title: str
    args: dict[str, Any] = Field(description="As called; sensitive values masked.")
    fields: list[CardField] = Field(description="The args as people read them, in order.")
    effect: str


class CardResource(_Out):
    """A card as teammates see it."""

    card_id: str
    status: Status
    kind: str
    approver: Literal["user", "team"]
    title: str
    text: str
    actions: list[CardAction]
    args_hash: str
    expires_at: str
    confirm_label: str | None = Field(None, description="The action's own Confirm button.")
    cancel_label: str | None = Field(None, description="The action's own Cancel button.")
    site: str
    session_id: str
    conversation_id: str
    user_id: str
    level: int
    levels: list[str]
    role: str | None
    approvals: list[Approval]
    approval: Approval | None = Field(description="The latest decision, if any.")
    decided_by: str | None
    reason: str | None
    results: list[dict[str, Any]]
    created_at: str
    updated_at: str


class CardResponse(_Out):
    success: Literal[True]
    card: CardResource


class CardsResponse(_Out):
    success: Literal[True]
    cards: list[CardResource]


class UserTokenResponse(_Out):
    success: Literal[True]
    user_token: str
    expires_at: str


CREATED_BY = (
    "Who the key counts as for four eyes: the key or account that made it (through whoever "
    "made that one), e.g. key:admin; null for a key made on the command line, which counts "
    "as itself."
)


class KeyResource(_Out):
    key_id: str
    name: str
    roles: list[str]
    sites: list[str] | None
    created_at: str
    created_by: str | None = Field(description=CREATED_BY)
    revoked_at: str | None


class KeyCreatedResponse(_Out):
    success: Literal[True]
    key: str = Field(description="The whole key. It is shown this once and cannot be again.")
    key_id: str
    name: str
    roles: list[str]
    sites: list[str] | None
    created_by: str = Field(description=CREATED_BY)


class KeysResponse(_Out):
    success: Literal[True]
    keys: list[KeyResource]


class KeyRevokedResponse(_Out):
    success: Literal[True]
    key_id: str
    revoked: Literal[True]


class AuditRow(_Out):
    """One audit row. Params and results are as the engine redacted them."""

    id: int
    ts: str = Field(description="ISO 8601, UTC.")
    site: str
    session_id: str
    conversation_id: str
    user_id: str
    card_id: str | None
    action: str
    kind: str
    status: str
    decided_by: str | None = Field(description="auto, user:<id> or teammate:<name>.")
    level: int | None
    ip: str | None
    user_agent: str | None
    duration_ms: float | None
    params: dict[str, Any]
    result: Any
    response: dict[str, Any] | None
    error: str | None
    params_text: str | None = Field(
        description="The args in words as the card showed them, a 'Label: value' line each "
        "(null on rows written before revision 0006)."
    )
    result_text: str | None = Field(
        description="The result as the sentence the visitor was told, if it ran."
    )
    seq: int | None
    prev_hash: str | None
    row_hash: str | None
    key_id: str | None
    chain_version: int = Field(
        description="Which fields row_hash covers: 2 adds the row's id and version to "
        "version 1's, 3 adds params_text and result_text."
    )


class AuditResponse(_Out):
    success: Literal[True]
    rows: list[AuditRow] = Field(description="Newest first.")
    next: str | None = Field(
        description="The cursor of the next, older page (pass it as before); null on the last."
    )


# Errors -----------------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


STATUS_CODES = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.ALREADY_DECIDED: 409,
    ErrorCode.EXPIRED: 409,
    ErrorCode.UNAVAILABLE: 503,
}
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = {"success": False, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def ok(status: int = 200, **fields: Any) -> Response:
    return JSONResponse({"success": True, **fields}, status_code=status)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error(exc.status, exc.code, exc.message, exc.headers)


async def engine_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    return error(STATUS_CODES.get(exc.code, 400), str(exc.code), exc.message)


async def unavailable(request: Request, exc: Exception) -> Response:
    log.warning("API request failed: %s: %s", type(exc).__name__, exc)
    return error(503, "unavailable", "the server's storage is unavailable; try again shortly")


async def refused_value(request: Request, exc: Exception) -> Response:
    # A value the database cannot hold (PostgreSQL refuses a NUL byte in text): the
    # request is at fault, and asking again would get the same answer.
    # Its class only: the message quotes the statement's parameters, the request's values.
    reason = exc.orig if isinstance(exc, DataError) else exc
    log.info("API request refused by the database: %s", type(reason).__name__)
    return error(422, "invalid_value", "the database cannot hold a value of this request")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "bad_request")
    return error(exc.status_code, code, exc.detail, exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    return error(500, "internal", "the server failed on this request")


# Reading requests -------------------------------------------------------------------------
M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, model: type[M]) -> M:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = await capped_body(request, MAX_BODY_BYTES)
    if raw is None:
        raise ApiError(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        # Parsed once, by the reader that refuses repeated keys, and validated as parsed.
        return model.model_validate(strict_json.loads(raw))
    except strict_json.NotJSON:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    except strict_json.JSONRefused as exc:
        raise ApiError(422, "invalid_body", f"body: {exc}") from None
    except ValidationError as exc:
        raise ApiError(422, "invalid_body", describe_invalid(exc, whole="body")) from None


def read_query(request: Request, model: type[M]) -> M:
    params = request.query_params
    if len(params.multi_items()) != len(params):
        raise ApiError(422, "invalid_query", "give each query parameter once")
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise ApiError(422, "invalid_query", describe_invalid(exc, whole="query")) from None


# Endpoints --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One authenticated request, its body and query read."""

    request: Request
    account: Account
    teammate: Teammate  # the key, as it decides and is audited
    body: Any
    query: Any

    @property
    def card_id(self) -> str:
        card_id: str = self.request.path_params["card_id"]
        if not CARD_ID.fullmatch(card_id):
            raise ApiError(404, "not_found", "no such card")
        return card_id


Handler = Callable[["Runtime", Call], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # under PREFIX
    handler: Handler
    summary: str
    response: type[BaseModel]
    roles: frozenset[str] = frozenset()  # any one of them; empty: any valid key
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()  # beyond those every endpoint of its sort can answer
    status: int = 200
    decides: bool = False  # refusals at the door are audited on the card it names
    reads: bool = False  # shows cards or audit rows: not to keys with only machine roles
    csv: bool = False  # also answers text/csv (format=csv)


async def list_cards(runtime: Runtime, call: Call) -> Response:
    query: CardsQuery = call.query
    cards = await runtime.engine.team_cards(call.teammate, query.status, query.limit)
    return ok(cards=await runtime.engine.describe(*cards))


async def get_card(runtime: Runtime, call: Call) -> Response:
    card = await runtime.engine.visible_card(call.card_id, call.teammate)
    if card is None:
        raise ApiError(404, "not_found", "no card with that id waits or waited on a team")
    return ok(card=(await runtime.engine.describe(card))[0])


async def resume(runtime: Runtime, call: Call) -> Response:
    body: ResumeRequest = call.body
    card = await runtime.engine.team_decide(
        call.card_id, body.decision, call.teammate, reason=body.reason
    )
    # The card as claimed: its latest approval is the one just made.
    return ok(card=(await runtime.engine.describe(card))[0])


def audit_row(row: dict[str, Any]) -> dict[str, Any]:
    """An audit row as JSON: its time in ISO 8601, like the CSV's."""
    return {**row, "ts": row["ts"].isoformat(timespec="microseconds")}


async def read_audit(runtime: Runtime, call: Call) -> Response:
    query: AuditQuery = call.query
    where = query.audit_filter(call.account.sites)
    if query.format == "csv":
        try:
            return await audit_csv(runtime, where)
        except ExportsBusy as exc:
            raise ApiError(503, "busy", str(exc), {"Retry-After": str(exc.retry_after)}) from None
    before = int(query.before) if query.before is not None else None
    page = await read_page(runtime.audit.engine, where, query.limit, before)
    cursor = str(page.next_before) if page.next_before is not None else None
    return ok(rows=[audit_row(row) for row in page.rows], next=cursor)


async def audit_csv(runtime: Runtime, where: AuditFilter) -> Response:
    """The rows as a CSV download, streamed chunk by chunk in constant memory, on one of
    the exports' own connections; ExportsBusy when all are in use. The first chunk of rows
    is read before the answer starts, so a database that cannot be reached is a 503
    rather than a cut-off file. A client that reads nothing for the idle timeout is cut
    off, and its connection goes back."""
    exports = runtime.audit.exports
    release = exports.claim()
    chunks = csv_chunks(exports.engine, where)

    async def close() -> None:
        try:
            await chunks.aclose()
        finally:
            release()

    try:
        first = [await anext(chunks)]
        if (rows := await anext(chunks, None)) is not None:
            first.append(rows)
    except BaseException:
        await close()
        raise
    return Download(
        _streamed(first, chunks),
        close=close,
        idle_timeout=runtime.settings.audit_export_idle_timeout,
        media_type="text/csv",
        headers=csv_headers(),
    )


def csv_headers() -> dict[str, str]:
    """The download's headers, named for the time it was asked for (UTC)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return {
        "Content-Disposition": f'attachment; filename="signoff-audit-{stamp}.csv"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


async def _streamed(first: list[str], rest: AsyncGenerator[str, None]) -> AsyncIterator[str]:
    for piece in first:
        yield piece
    async for piece in rest:
        yield piece


async def user_token(runtime: Runtime, call: Call) -> Response:
    body: UserTokenRequest = call.body
    site = body.site
    scope = call.account.sites
    if site is None and scope is not None:
        if len(scope) != 1:
            raise ApiError(422, "invalid_body", "name the site: this key is scoped to several")
        [site] = scope  # a key for one site signs tokens for that site only
    if site is not None and site not in runtime.sites:
        raise ApiError(422, "invalid_body", f"site {site!r} is not configured")
    if site is not None and not call.account.covers(site):
        raise ApiError(403, "forbidden", f"this key is not for the site {site!r}")
    now = time.time()
    try:
        token = sign_user_token(runtime.settings.secret, body.user_id, body.ttl, site, now)
    except TokenError as exc:
        raise ApiError(422, "invalid_body", str(exc)) from None
    return ok(user_token=token, expires_at=iso(now + body.ttl))


def beyond_grant(call: Call, doing: str, exc: AccountForbidden) -> ApiError:
    """A key asked to make or revoke a key with more than it holds itself: logged, as
    refusals that name no card are, and answered 403."""
    log.warning("refused to %s for %s: %s", doing, call.account.name, exc)
    return ApiError(403, "forbidden", str(exc))


async def create_key(runtime: Runtime, call: Call) -> Response:
    body: KeyRequest = call.body
    try:
        key = await runtime.accounts.create_key(body.name, body.roles, body.sites, call.account)
    except AccountForbidden as exc:
        raise beyond_grant(call, f"create the API key {body.name!r}", exc) from None
    except AccountExists as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except AccountError as exc:
        raise ApiError(422, "invalid_body", str(exc)) from None
    key_id = parse_key_id(key)
    log.info("API key %s (%r, %s) created by %s", key_id, body.name, body.roles, call.account.name)
    roles = sorted(set(body.roles))
    sites = sorted(set(body.sites)) if body.sites is not None else None
    return ok(
        201,
        key=key,
        key_id=key_id,
        name=body.name,
        roles=roles,
        sites=sites,
        created_by=call.account.person,
    )


def key_resource(key: KeyInfo) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "roles": key.roles,
        "sites": key.sites,
        "created_at": iso(key.created_at.timestamp()),
        "created_by": key.created_by,
        "revoked_at": iso(key.revoked_at.timestamp()) if key.revoked_at else None,
    }


async def list_keys(runtime: Runtime, call: Call) -> Response:
    keys = await runtime.accounts.list_keys(call.account)
    return ok(keys=[key_resource(key) for key in keys])


async def revoke_key(runtime: Runtime, call: Call) -> Response:
    key_id: str = call.request.path_params["key_id"]
    try:
        revoked = await runtime.accounts.revoke_key(key_id, call.account)
    except AccountForbidden as exc:
        raise beyond_grant(call, f"revoke the API key {key_id}", exc) from None
    if not revoked:
        raise ApiError(404, "not_found", "no live key with that id")
    log.info("API key %s revoked by %s", key_id, call.account.name)
    return ok(key_id=key_id, revoked=True)


ENDPOINTS = (
    Endpoint(
        "GET",
        "/cards",
        list_cards,
        "Cards that wait or waited on teammates, newest first",
        CardsResponse,
        query=CardsQuery,
        errors=(403,),
        reads=True,
    ),
    Endpoint(
        "GET",
        "/cards/{card_id}",
        get_card,
        "One card that waits or waited on teammates",
        CardResponse,
        errors=(403, 404),
        reads=True,
    ),
    Endpoint(
        "POST",
        "/cards/{card_id}/resume",
        resume,
        "Approve or reject the level of the card that waits now (the key needs its role)",
        CardResponse,
        body=ResumeRequest,
        errors=(403, 404, 409),
        decides=True,
    ),
    Endpoint(
        "GET",
        "/audit",
        read_audit,
        "Audit rows of the sites the key covers, newest first in pages, or all as CSV",
        AuditResponse,
        query=AuditQuery,
        errors=(403,),
        reads=True,
        csv=True,
    ),
    Endpoint(
        "POST",
        "/user-tokens",
        user_token,
        "Sign a user token for a host page",
        UserTokenResponse,
        roles=frozenset({HOST, ADMIN}),
        body=UserTokenRequest,
    ),
    Endpoint(
        "GET",
        "/keys",
        list_keys,
        "Every API key, revoked ones too; never their secrets",
        KeysResponse,
        roles=frozenset({ADMIN}),
    ),
    Endpoint(
        "POST",
        "/keys",
        create_key,
        "Create an API key; the answer holds it once",
        KeyCreatedResponse,
        errors=(409,),
        roles=frozenset({ADMIN}),
        body=KeyRequest,
        status=201,
    ),
    Endpoint(
        "DELETE",
        "/keys/{key_id}",
        revoke_key,
        "Revoke an API key",
        KeyRevokedResponse,
        roles=frozenset({ADMIN}),
        errors=(404,),
    ),
)


# The OpenAPI document -------------------------------------------------------------------
ERROR_TEXT = {
    400: "The body is not JSON",
    401: "No valid API key",
    403: "The key lacks the role, is not for the site asked for, or would grant more than it holds",
    404: "Not found",
    409: "Already decided or expired (a card); the name is taken (a key)",
    413: "The body is too large",
    415: "The body is not application/json",
    422: "The body or query does not fit the schema",
    503: "Storage unavailable, or as many audit exports running as allowed; try again",
}


def _errors(endpoint: Endpoint) -> list[int]:
    found = {*endpoint.errors, 503, 401}
    if endpoint.roles:
        found.add(403)
    if endpoint.body:
        found.update({400, 413, 415, 422})
    if endpoint.query:
        found.add(422)
    return sorted(found)


@functools.cache
def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for ``ENDPOINTS``; the schemas are the models' JSON schemas."""
    used: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for e in ENDPOINTS:
        used.append((e.response, "serialization"))
        used += [(model, "validation") for model in (e.body, e.query) if model]
    refs, schemas = models_json_schema(
        list(dict.fromkeys(used)), ref_template="#/components/schemas/{model}"
    )
    components = schemas["$defs"]
    paths: dict[str, dict[str, Any]] = {
        PREFIX + OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document (no key needed)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
    }
    for e in ENDPOINTS:
        operation: dict[str, Any] = {"operationId": e.handler.__name__, "summary": e.summary}
        if e.roles:
            operation["description"] = "Roles: " + ", ".join(sorted(e.roles)) + "."
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", e.path)
        ]
        if e.query:
            fields = components[e.query.__name__]["properties"]
            parameters += [
                {"name": name, "in": "query", "required": False, "schema": schema}
                for name, schema in fields.items()
            ]
        if parameters:
            operation["parameters"] = parameters
        if e.body:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(e.body, "validation")]}},
            }
        error_schema = {"application/json": {"schema": refs[(ErrorResponse, "serialization")]}}
        content: dict[str, Any] = {
            "application/json": {"schema": refs[(e.response, "serialization")]}
        }
        if e.csv:
            content["text/csv"] = {"schema": {"type": "string"}}
        operation["responses"] = {
            str(e.status): {"description": "Done", "content": content},
            **{
                str(status): {"description": ERROR_TEXT[status], "content": error_schema}
                for status in _errors(e)
            },
        }
        paths.setdefault(PREFIX + e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "signoff",
            "version": __version__,
            "description": (
                "Decide cards that wait on teammates, read the audit log, sign user tokens, "
                "manage keys."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: `signoff keys create` or POST /api/v1/keys.",
                }
            },
        },
        "security": [{"apiKey": []}],
    }


# Serving ----------------------------------------------------------------------------------
async def key_holder(accounts: Accounts, request: Request) -> Account:
    """The account of the API key in the request's ``Authorization: Bearer`` header;
    ApiError 401 without a live one."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <API key>", CHALLENGE)
    account = None
    if len(presented) <= MAX_KEY_CHARS:
        account = await accounts.authenticate_key(presented)
    if account is None:
        raise ApiError(401, "unauthorized", "the API key is not valid or was revoked", CHALLENGE)
    return account


class Api:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def serve(self, endpoint: Endpoint, request: Request) -> Response:
        by = UNAUTHENTICATED
        try:
            account = await key_holder(self.runtime.accounts, request)
            teammate = account.teammate(Channel.API, *client_of(request))
            by = teammate.signature
            if endpoint.roles and not endpoint.roles & account.roles:
                needed = " or ".join(sorted(endpoint.roles))
                raise ApiError(403, "forbidden", f"this needs a key with the role {needed}")
            if endpoint.reads and account.roles <= MACHINE_ROLES:
                # A host backend signs user tokens, a monitor reads /metrics: neither is to
                # read visitors' cards, addresses and what was done for them.
                roles = " and ".join(sorted(account.roles))
                raise ApiError(403, "forbidden", f"a key with only the role {roles} reads no cards")
            body = await read_body(request, endpoint.body) if endpoint.body else None
            query = read_query(request, endpoint.query) if endpoint.query else None
        except ApiError as exc:
            card_id = request.path_params.get("card_id", "")
            if endpoint.decides and CARD_ID.fullmatch(card_id):
                decider = Decider.at(by, client_of(request))
                await self.runtime.engine.refuse_attempt(card_id, decider, f"api: {exc.message}")
            raise
        call = Call(request, account, teammate, body, query)
        return await endpoint.handler(self.runtime, call)

    def routes(self) -> list[Route]:
        """One route per path, serving each of its methods: a method the path does not
        serve gets 405 with every one it does in ``Allow``."""
        by_path: dict[str, dict[str, Endpoint]] = {}
        for endpoint in ENDPOINTS:
            by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint

        def route(path: str, endpoints: dict[str, Endpoint]) -> Route:
            async def handle(request: Request) -> Response:
                # HEAD is served as GET, as Starlette adds it to a GET route.
                method = "GET" if request.method == "HEAD" else request.method
                return await self.serve(endpoints[method], request)

            return Route(path, handle, methods=list(endpoints))

        return [route(path, endpoints) for path, endpoints in by_path.items()]


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


def api_mount(runtime: Runtime) -> Mount:
    """The ``/api/v1`` routes, as one app with its own JSON error answers."""
    api = Api(runtime)
    app = Starlette(
        routes=[Route(OPENAPI_PATH, openapi), *api.routes()],
        exception_handlers={
            ApiError: api_error,
            ProtocolError: engine_error,
            **dict.fromkeys(OUTAGES, unavailable),
            DataError: refused_value,
            HTTPException: http_error,
            500: internal_error,
        },
    )
    return Mount(PREFIX, app=app)
