"""Signed tokens: the visitor's session token and the host site's user token.

No cookies are used, so blocking third-party cookies does not break embedding.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from signoff.core.plain_text import control_character

SESSION_SALT = "signoff.session"
USER_SALT = "signoff.user"
MAX_USER_ID = 256
MAX_USER_TOKEN_TTL = 3600.0  # a user token only has to last until the widget's hello


ANONYMOUS_PREFIX = "anon_"


class TokenError(ValueError):
    pass


class SessionTooOld(TokenError):
    """A genuine session token whose session began longer ago than sessions may last,
    however busy it was: the session is over (``expired``); a new one may start."""

    def __init__(self) -> None:
        super().__init__("the session has reached its lifetime; start a new one")


class UserTokenExpired(TokenError):
    """A genuine user token past its time: good enough to confirm a session's user."""

    def __init__(self, user_id: str) -> None:
        super().__init__("user token has expired")
        self.user_id = user_id


def anonymous_user_id() -> str:
    return ANONYMOUS_PREFIX + secrets.token_urlsafe(12)


def is_anonymous(user_id: str) -> bool:
    return user_id.startswith(ANONYMOUS_PREFIX)


@dataclass(frozen=True)
class SessionClaims:
    session_id: str
    user_id: str
    site: str
    # When the session began, in seconds since the epoch, signed with the rest: a resumed
    # session's new token carries its first one's, so its lifetime holds however often it
    # is resumed. None when signing: now.
    issued_at: float | None = None


def _serializer(secret: str, salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=salt)


def sign_session_token(secret: str, claims: SessionClaims, now: float | None = None) -> str:
    issued_at = claims.issued_at
    if issued_at is None:
        issued_at = time.time() if now is None else now
    return _serializer(secret, SESSION_SALT).dumps(
        {"sid": claims.session_id, "uid": claims.user_id, "site": claims.site, "iat": issued_at}
    )


def load_session_token(
    secret: str, token: str, lifetime: float | None = None, now: float | None = None
) -> SessionClaims:
    """The claims of a token signed by this server; its session may still have expired.

    SessionTooOld when the session began ``lifetime`` seconds ago or more (None: no
    limit), or its token does not say when (one signed before tokens did).
    """
    try:
        data = _serializer(secret, SESSION_SALT).loads(token)
        sid, uid, site = str(data["sid"]), str(data["uid"]), str(data["site"])
        issued_at = data.get("iat")
    except (BadSignature, KeyError, TypeError, AttributeError) as exc:
        raise TokenError("session token is not valid") from exc
    if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
        raise SessionTooOld
    if lifetime is not None and (time.time() if now is None else now) - issued_at >= lifetime:
        raise SessionTooOld
    return SessionClaims(sid, uid, site, float(issued_at))


def sign_user_token(
    secret: str, user_id: str, ttl: float = 300, site: str | None = None, now: float | None = None
) -> str:
    """What a host backend gives its page so the widget acts as that user.

    Short-lived: it only has to last until the widget's ``hello``.
    """
    if not user_id or len(user_id) > MAX_USER_ID:
        raise TokenError(f"user id must be 1 to {MAX_USER_ID} characters")
    if why := control_character(user_id):
        raise TokenError(f"user id: {why}")
    if is_anonymous(user_id):
        raise TokenError(f"user ids starting with {ANONYMOUS_PREFIX!r} are for anonymous visitors")
    if not 0 < ttl <= MAX_USER_TOKEN_TTL:  # also false for NaN; infinity is too long
        raise TokenError(
            f"ttl must be a number of seconds above 0 and at most {MAX_USER_TOKEN_TTL:g}, got {ttl}"
        )
    expires = (time.time() if now is None else now) + ttl
    payload: dict[str, object] = {"uid": user_id, "exp": int(expires)}
    if site:
        payload["site"] = site
    return _serializer(secret, USER_SALT).dumps(payload)


def load_user_token(secret: str, token: str, site: str, now: float | None = None) -> str:
    try:
        data = _serializer(secret, USER_SALT).loads(token)
        uid, expires = str(data["uid"]), float(data["exp"])
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise TokenError("user token is not valid") from exc
    if data.get("site") not in (None, site):
        raise TokenError("user token was signed for another site")
    if is_anonymous(uid):
        raise TokenError("user token names an anonymous user id")
    if (time.time() if now is None else now) >= expires:
        raise UserTokenExpired(uid)
    return uid
