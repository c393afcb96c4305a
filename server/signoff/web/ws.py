"""The widget's WebSocket: hello, then messages and decisions; history frames pushed in order.

Each connection has one writer task, so frames go out in one order: direct
replies (welcome, errors, pong) first, then the session's history after the
last seq this connection sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from signoff import metrics
from signoff.core.deciders import Client, Decider
from signoff.core.frames import (
    CLIENT_FRAME_TYPES,
    MAX_FRAME_BYTES,
    ClientFrame,
    Decision,
    ErrorCode,
    Hello,
    Message,
    PageCall,
    Ping,
    ProtocolError,
    compact_replay,
    iso,
    parse_client_frame,
    refused_decision_card,
)
from signoff.core.ratelimit import TokenBucket
from signoff.core.tokens import (
    SessionClaims,
    SessionTooOld,
    TokenError,
    UserTokenExpired,
    is_anonymous,
    load_session_token,
    load_user_token,
    sign_session_token,
)
from signoff.engine.turns import visitor
from signoff.store import News, SessionRecord, StoreUnavailable
from signoff.web.incoming import client_of
from signoff.web.limits import new_sessions_record

if TYPE_CHECKING:
    from signoff.web.app import Runtime

log = logging.getLogger("signoff.web")

RATE_PER_SECOND = 5.0
RATE_BURST = 20
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
# Close reasons of a 1008 for a setup mistake: the widget names the fix in the console.
ORIGIN_REFUSED = "origin not allowed"
SITE_REFUSED = "unknown site"
# How soon a writer that could not read the store tries again.
STORE_RETRY = 1.0
MAX_QUEUED_REPLIES = 256
# Frames held for a socket that has not sent them yet; past it, they are read back instead.
MAX_HANDED_FRAMES = 512
# The most history a reconnect is replayed frame by frame; past it, it gets one snapshot
# of the session instead (bounded by the conversation's window), so a short hello cannot
# ask for megabytes.
REPLAY_BUDGET = 256 * 1024

# Each frame type's count, looked up once: a label lookup takes a lock and checks its value.
_RECEIVED = {kind: metrics.frames_received.labels(kind) for kind in CLIENT_FRAME_TYPES}


def unavailable(ref: str | None) -> ProtocolError:
    metrics.store_unavailable.inc()
    return ProtocolError(
        ErrorCode.UNAVAILABLE, "the server cannot reach its session store; try again shortly", ref
    )


def _ref(frame: ClientFrame) -> str | None:
    """What an error about this frame refers to: its card or its message."""
    return getattr(frame, "card_id", None) or getattr(frame, "client_id", None)


def _size(raw: str | bytes) -> int:
    if isinstance(raw, bytes) or len(raw) * 4 <= MAX_FRAME_BYTES:
        return len(raw)  # bytes, or text too short to exceed the limit in any encoding
    return len(raw.encode("utf-8"))


async def websocket_endpoint(websocket: WebSocket) -> None:
    runtime = websocket.app.state.runtime
    origin = websocket.headers.get("origin")
    if origin is None:
        # Not a browser. Closing before accept refuses the handshake (HTTP 403).
        await websocket.close(code=POLICY_VIOLATION)
        return
    if not runtime.origin_allowed(origin, websocket.headers.get("host")):
        runtime.refusals.unknown_origin(origin)
        # A refused handshake tells the page nothing; a close with a reason lets the
        # widget name the cause to the site owner (and stop retrying).
        await websocket.accept()
        await websocket.close(code=POLICY_VIOLATION, reason=ORIGIN_REFUSED)
        return
    await websocket.accept()
    metrics.connections.inc()
    try:
        await Connection(websocket, runtime).serve()
    finally:
        metrics.connections.dec()


class Connection:
    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        self.ws = websocket
        self.runtime = runtime
        self.engine = runtime.engine
        # The visitor's address and browser, for the audit rows of their decisions; never
        # sent in a frame.
        self.client: Client = client_of(websocket)
        self.limits = runtime.limits
        self._joined: str | None = None  # the session this socket counts against
        self.session: SessionRecord | None = None
        self.sent_seq = 0
        self.bucket = TokenBucket(RATE_PER_SECOND, RATE_BURST, time.monotonic())
        self._direct: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._ended = False
        self._closing: tuple[int, str] | None = None  # the writer closes after the replies
        self._replaying = False
        # Frames the store handed over as it wrote them, in order; and whether this socket
        # must read the history instead (after hello, or when one was written elsewhere).
        self._handed: deque[tuple[int, str]] = deque()
        self._read_history = False
        self._last_rate_notice = -1.0
        self._unsubscribe: Callable[[], None] | None = None

    async def serve(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                raw = raw if raw is not None else message.get("bytes", b"")
                if _size(raw) > MAX_FRAME_BYTES:
                    # The server's own limit usually closes first; this holds under any server.
                    await self.ws.close(code=MESSAGE_TOO_BIG)
                    break
                await self._receive(raw)
                if writer.done():
                    break
        except WebSocketDisconnect:
            pass
        finally:
            self._leave()
            writer.cancel()

    # Sending ----------------------------------------------------------------------------
    def send(self, frame: dict[str, Any]) -> None:
        if len(self._direct) >= MAX_QUEUED_REPLIES:
            # A client that floods and does not read: bounded memory, not an endless queue.
            self._direct.clear()
            self.close_after_replies(POLICY_VIOLATION, "not reading replies")
            return
        self._direct.append(frame)
        self._wake.set()

    def close_after_replies(self, code: int, reason: str = "") -> None:
        """Close the socket once the replies queued so far have been sent."""
        self._closing = (code, reason)
        self._wake.set()

    def refuse(self, error: ProtocolError) -> None:
        if error.code is ErrorCode.RATE_LIMITED and error.ref is None:
            # One notice per second is enough to say "slow down".
            now = time.monotonic()
            if now - self._last_rate_notice < 1.0:
                return
            self._last_rate_notice = now
        metrics.errors_sent.labels(error.code).inc()
        self.send(error.frame())

    def _on_news(self, news: News) -> None:
        if news.event == "end":
            self._ended = True
        elif news.frames and len(self._handed) + len(news.frames) <= MAX_HANDED_FRAMES:
            self._handed.extend(news.frames)
        else:  # written elsewhere, or more than a slow reader should hold: read them
            self._handed.clear()
            self._read_history = True
        self._wake.set()

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._direct:
                    await self.ws.send_text(json.dumps(self._direct.popleft()))
                if self._closing is not None:
                    await self.ws.close(*self._closing)
                    return
                if self.session is None:
                    continue
                if self._ended:
                    self._leave()
                    await self.ws.send_text(
                        json.dumps({"type": "session.end", "reason": "expired"})
                    )
                    continue
                try:
                    await self._send_history(self.session)
                except StoreUnavailable:
                    # The socket stays open: what the client sends meanwhile gets
                    # `unavailable` errors, and the history catches up once the store is back.
                    self._read_history = True
                    asyncio.get_running_loop().call_later(STORE_RETRY, self._wake.set)
        except (WebSocketDisconnect, RuntimeError):
            return  # the socket closed under us; the reader sees it too
        except Exception:
            log.exception("cannot send to a widget; closing its socket")
            await self.ws.close(code=INTERNAL_ERROR)

    async def _send_history(self, session: SessionRecord) -> None:
        """The session's history frames after the last one this socket sent: those the
        store handed over as it wrote them, else read from the history."""
        while self._handed and not self._read_history:
            seq, text = self._handed.popleft()
            if seq == self.sent_seq + 1:
                await self.ws.send_text(text)
                self.sent_seq = seq
            elif seq > self.sent_seq:  # one is missing (written elsewhere): read them
                self._read_history = True
        if not self._read_history:
            return
        # Cleared before the read: what is handed over meanwhile is kept for the next wake.
        self._read_history = False
        self._handed.clear()
        frames = await self.engine.store.frames_after(session.session_id, self.sent_seq)
        if frames and frames[0][0] > self.sent_seq + 1:
            # What this client missed was trimmed: show the session as it is now.
            await self._send_snapshot(session, frames)
            return
        if self._replaying:
            # A reconnect needs each finished message once, not its every delta.
            frames, self._replaying = compact_replay(frames), False
            if sum(len(text) for _, text in frames) > REPLAY_BUDGET:
                await self._send_snapshot(session, frames)
                return
        for seq, text in frames:
            await self.ws.send_text(text)
            self.sent_seq = seq

    async def _send_snapshot(self, session: SessionRecord, frames: list[tuple[int, str]]) -> None:
        """The session as it is now, standing for history up to the newest of ``frames``."""
        head = frames[-1][0]
        snapshot = await self.engine.snapshot(session, frames)
        await self.ws.send_text(json.dumps({**snapshot, "seq": head}))
        self.sent_seq, self._replaying = head, False

    def _leave(self) -> None:
        """Stop following the session (closed socket or ended session)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._joined is not None:
            self.limits.leave(self._joined)
            self._joined = None
        self.session = None
        self._ended = False

    # Receiving --------------------------------------------------------------------------
    async def _receive(self, raw: str | bytes) -> None:
        if self._closing is not None:
            return  # the socket is being closed: nothing more is handled
        allowed = self.bucket.take(time.monotonic())
        try:
            frame = parse_client_frame(raw)
            if not allowed:
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED, "too many frames; slow down", _ref(frame)
                )
            if (
                isinstance(frame, Message | Decision | PageCall)
                and self.session is not None
                and not self.limits.take(self.session.session_id, self.client[0], time.monotonic())
            ):
                # Counted over every socket of the session and of the address.
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED, "too many messages from this visitor", _ref(frame)
                )
            _RECEIVED[frame.type].inc()
            await self._dispatch(frame)
        except StoreUnavailable:
            self.refuse(unavailable(_ref(frame)))
        except ProtocolError as error:
            if not allowed and error.code is not ErrorCode.RATE_LIMITED:
                error = ProtocolError(ErrorCode.RATE_LIMITED, "too many frames; slow down")
            elif error.code is ErrorCode.BAD_FRAME and self.session is not None:
                self._audit_malformed_decision(raw, error.message)
            self.refuse(error)

    def _audit_malformed_decision(self, raw: str | bytes, why: str) -> None:
        """A malformed decision (an extra field, a bad hash) is a refused attempt on the
        card it names, audited as any other."""
        card_id = refused_decision_card(raw)
        if card_id is not None and self.session is not None:
            by = Decider.at(visitor(self.session), self.client)
            self.engine.spawn(self.engine.refuse_attempt(card_id, by, f"socket: {why}"))

    async def _dispatch(self, frame: ClientFrame) -> None:
        if isinstance(frame, Ping):
            self.send({"type": "pong"})
        elif isinstance(frame, Hello):
            if self.session is not None:
                raise ProtocolError(ErrorCode.BAD_FRAME, "hello was already sent")
            await self._hello(frame)
        elif self.session is None:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "send hello first", _ref(frame))
        elif isinstance(frame, Message):
            session = await self._touch()
            try:
                self.engine.queue_message(session, frame.text, frame.client_id, self.client)
            except ProtocolError as error:
                raise ProtocolError(error.code, error.message, frame.client_id) from None
        elif isinstance(frame, Decision):
            session = await self._touch()
            self.engine.spawn(self._decide(session, frame))
        elif isinstance(frame, PageCall):
            session = await self._touch()
            self.engine.spawn(self._call(session, frame))

    async def _touch(self) -> SessionRecord:
        assert self.session is not None
        try:
            self.session = await self.engine.touch(self.session.session_id)
        except ProtocolError:
            self._ended = True
            self._wake.set()
            raise
        return self.session

    async def _decide(self, session: SessionRecord, frame: Decision) -> None:
        try:
            await self.engine.decide(
                session,
                frame.card_id,
                frame.decision,
                frame.args_hash,
                self.client,
                reason=frame.reason,
            )
        except StoreUnavailable:
            self.refuse(unavailable(frame.card_id))
        except ProtocolError as error:
            self.refuse(error)

    async def _call(self, session: SessionRecord, frame: PageCall) -> None:
        site = self.runtime.sites.get(session.site)
        callable_here = site.page_actions if site else ()
        try:
            await self.engine.cards.call_from_page(
                session, frame.client_id, frame.action, dict(frame.args), callable_here
            )
        except StoreUnavailable:
            self.refuse(unavailable(frame.client_id))
        except ProtocolError as error:
            self.refuse(error)

    async def _hello(self, hello: Hello) -> None:
        site = self.runtime.sites.get(hello.site)
        origin = self.ws.headers.get("origin")
        if site is None:
            self.runtime.refusals.unknown_site(hello.site, origin, list(self.runtime.sites))
            self.refuse(ProtocolError(ErrorCode.FORBIDDEN, f"unknown site {hello.site!r}"))
            self.close_after_replies(POLICY_VIOLATION, SITE_REFUSED)
            return
        if not site.allows(origin, self.ws.headers.get("host")):
            self.runtime.refusals.origin_not_for_site(site.name, origin)
            self.refuse(ProtocolError(ErrorCode.FORBIDDEN, "origin not allowed for this site"))
            self.close_after_replies(POLICY_VIOLATION, ORIGIN_REFUSED)
            return
        secret = self.runtime.settings.secret
        user_id, token_expired = None, False
        if hello.user_token is not None:
            try:
                user_id = load_user_token(secret, hello.user_token, site.name)
            except UserTokenExpired as exc:
                # Still names the page's user: enough to resume that user's session.
                user_id, token_expired = exc.user_id, True
            except TokenError as exc:
                raise ProtocolError(ErrorCode.UNAUTHORIZED, str(exc)) from None
        if hello.session_token is not None:
            session = await self._resume(hello.session_token, site.name, user_id)
        elif token_expired:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "user token has expired")
        else:
            await self._may_open_session()
            session = await self.engine.open_session(site.name, user_id)
        if not self.limits.join(session.session_id):
            self.refuse(
                ProtocolError(ErrorCode.RATE_LIMITED, "too many open connections for this session")
            )
            self.close_after_replies(POLICY_VIOLATION)
            return
        self._joined = session.session_id
        last = await self.engine.store.last_seq(session.session_id)
        token = sign_session_token(
            secret,
            # Signed with when the session began, so its lifetime holds across resumes.
            SessionClaims(session.session_id, session.user_id, session.site, session.created_at),
        )
        self.send(
            {
                "type": "welcome",
                "session_id": session.session_id,
                "session_token": token,
                "user_id": session.user_id,
                "expires_at": iso(session.expires_at),
                "seq": last,
                **site.welcome(),
            }
        )
        self.session = session
        # A last_seq past this session's head was seen in another session: replay it all.
        self.sent_seq = hello.last_seq if hello.last_seq <= last else 0
        self._unsubscribe = self.engine.store.subscribe(session.session_id, self._on_news)
        self._replaying = self._read_history = True
        self._wake.set()

    async def _may_open_session(self) -> None:
        """Refuse a new session to an address that opened too many this minute, on any
        instance (a session costs memory until it expires)."""
        address = self.client[0]
        if address is None:
            return
        opened = await self.engine.store.count_record(new_sessions_record(address), 60.0)
        if opened > self.limits.new_sessions_per_minute:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, "too many new sessions from this address; try later"
            )

    async def _resume(self, token: str, site: str, user_id: str | None) -> SessionRecord:
        try:
            settings = self.runtime.settings
            claims = load_session_token(settings.secret, token, settings.session_lifetime)
        except SessionTooOld as exc:
            raise ProtocolError(ErrorCode.EXPIRED, str(exc)) from None
        except TokenError as exc:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, str(exc)) from None
        if claims.site != site:
            raise ProtocolError(ErrorCode.FORBIDDEN, "the session belongs to another site")
        if user_id is not None and claims.user_id != user_id:
            raise ProtocolError(ErrorCode.FORBIDDEN, "the session belongs to another user")
        if user_id is None and not is_anonymous(claims.user_id):
            # The page no longer vouches for its signed-in user (say, after logging out).
            raise ProtocolError(ErrorCode.FORBIDDEN, "the session belongs to a signed-in user")
        return await self.engine.touch(claims.session_id)
