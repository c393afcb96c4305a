"""Dashboard logins: kept server-side in the store, so every instance knows them.

The browser holds only a random id, in an HttpOnly cookie; the store keeps the teammate's
name, the login's CSRF token and its end under ``dashboard:`` + a SHA-256 of that id (so
whoever reads the store cannot use what is there as a cookie). A login lasts LOGIN_TTL
seconds from the moment the password was checked, however busy it is. Roles are not kept:
each request reads the teammate anew, so one who is disabled is out at once, and so is a
login made before the teammate's password was changed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass

from signoff.store import Store

LOGIN_TTL = 12 * 3600.0
LOGIN_TRIES = 5  # per name and address, in each LOGIN_WINDOW seconds
LOGIN_WINDOW = 300.0
ACCOUNT_TRIES = 10  # per name, from any addresses, in each ACCOUNT_WINDOW seconds
ACCOUNT_WINDOW = 900.0
ADDRESS_TRIES = 20  # per address, for any names, in each LOGIN_WINDOW seconds
COOKIE = "signoff_dashboard"
RECORD_PREFIX = "dashboard:"
MAX_COOKIE_LENGTH = 100


@dataclass(frozen=True)
class Login:
    name: str
    stamp: str  # the teammate's credential stamp when they logged in (Account.stamp)
    csrf: str  # the synchronizer token every form of this login carries


def _record(cookie: str) -> str:
    return RECORD_PREFIX + hashlib.sha256(cookie.encode()).hexdigest()


class Logins:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def open(self, name: str, stamp: str) -> str:
        """A new login for ``name``, ending LOGIN_TTL from now: the cookie value to hand out."""
        cookie = secrets.token_urlsafe(32)
        login = Login(name, stamp, secrets.token_urlsafe(32))
        await self.store.put_record(_record(cookie), json.dumps(asdict(login)), LOGIN_TTL)
        return cookie

    async def find(self, cookie: str | None) -> Login | None:
        """The live login a cookie names, or None (none, ended, or past its end)."""
        if not cookie or len(cookie) > MAX_COOKIE_LENGTH:
            return None
        raw = await self.store.get_record(_record(cookie))
        if raw is None:
            return None
        try:
            return Login(**json.loads(raw))
        except (TypeError, ValueError):  # not a login this release wrote: none at all
            return None

    async def close(self, cookie: str) -> None:
        await self.store.delete_record(_record(cookie))


class LoginThrottle:
    """Login tries, counted three ways, each a few tries and then none until the window
    that the first of them opened has passed: per name and client address (a teammate who
    mistypes), per name from any address (one account guessed at from many addresses, or
    one address claiming to be many through X-Forwarded-For), and per address for any
    names (one password tried on many accounts).

    Counted in the store, so every instance behind a load balancer counts the same tries,
    and before the password is checked, so tries sent in parallel count too. A successful
    login starts only its own name and address afresh: the other two counts are what an
    attacker with an account of their own could otherwise reset.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _record(kind: str, *parts: str) -> str:
        return f"login-tries{kind}:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()

    async def attempt(self, name: str, address: str) -> bool:
        """Whether a login may be tried now; counts it, narrowest count first.

        A try refused by one count is not counted by the wider ones, so tries sent at once
        for one name from one address are held to that pair's limit, not fewer.
        """
        limits = [
            (self._record("", name, address), LOGIN_WINDOW, LOGIN_TRIES),
            (self._record("-name", name), ACCOUNT_WINDOW, ACCOUNT_TRIES),
            (self._record("-address", address), LOGIN_WINDOW, ADDRESS_TRIES),
        ]
        for record, window, tries in limits:
            if await self.store.count_record(record, window) > tries:
                return False
        return True

    async def succeeded(self, name: str, address: str) -> None:
        await self.store.delete_record(self._record("", name, address))
