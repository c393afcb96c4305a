"""CSRF defences for the dashboard's forms: the Origin of a post, and a token in each form.

A logged-in teammate's forms carry their login's token (a synchronizer token kept in the
store). The login form has no login yet: it carries a signed random value that must match
a cookie set with the form (a signed double-submit cookie), so a page elsewhere can neither
read nor forge the pair. Both cookies are SameSite=Strict as well; browsers that send
Origin or Sec-Fetch-Site on a post must name this server.
"""

from __future__ import annotations

import hmac
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

FIELD = "csrf"
LOGIN_COOKIE = "signoff_login_csrf"
LOGIN_FORM_AGE = 3600  # seconds a login form stays good to post


def same_origin(request: Request) -> bool:
    """Whether a post comes from a page of this server, as far as the browser says."""
    host = request.headers.get("host")
    origin = request.headers.get("origin")
    if origin is not None and origin not in {f"http://{host}", f"https://{host}"}:
        return False
    fetch_site = request.headers.get("sec-fetch-site")
    return fetch_site is None or fetch_site == "same-origin"


def tokens_match(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


class LoginForms:
    """The token pair of a login form: a cookie value, and the same value signed."""

    def __init__(self, secret: str) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt="signoff.dashboard.login")

    def issue(self) -> tuple[str, str]:
        """(cookie value, form token)."""
        value = secrets.token_urlsafe(24)
        return value, self.serializer.dumps(value)

    def check(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        try:
            value = self.serializer.loads(token, max_age=LOGIN_FORM_AGE)
        except BadSignature:  # also SignatureExpired
            return False
        return isinstance(value, str) and tokens_match(value, cookie)
