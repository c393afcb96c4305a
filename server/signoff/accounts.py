"""Teammates and API keys: who may decide cards that wait on a team, and how they prove it.

Both live in the audit database (``SIGNOFF_AUDIT``), so every instance sees the same
ones and ``signoff users create`` / ``signoff keys create`` work while servers run.
Passwords are hashed with argon2id; API keys are long random strings, looked up by
their public id and checked against a SHA-256 of their secret part in constant time.
``SIGNOFF_ADMIN_KEY`` is an admin key that needs no database row: the first key an
operator has, to create the others.

An account made through another account (a key made with an admin key over the API) can
hold no role and cover no site its maker does not, and counts as its maker's person for
four eyes: whoever can mint keys cannot sign off both levels of a card with two of them.
The command line and ``SIGNOFF_ADMIN_KEY`` are the operator's own: what they make may hold
any role and site, and counts as itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from signoff.audit.schema import api_keys, teammates
from signoff.config import SITE_PATTERN
from signoff.core.teammates import ADMIN, NAME_PATTERN, Channel, Teammate, check_role_name

KEY_PREFIX = "sok_"  # recognisable in logs and by secret scanners
MIN_PASSWORD_LENGTH = 10
SLACK_USER_PATTERN = re.compile(r"[UW][A-Z0-9]{1,63}")  # Slack's user ids: U… or W…
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{1,32}")  # what create_key makes: 16 hex digits
ADMIN_KEY_ID = "admin"


class AccountError(ValueError):
    """A teammate or key cannot be created as asked; the message says why."""


class AccountExists(AccountError):
    """The name (or the Slack user) is taken: names sign decisions, so one name, one account."""


class AccountForbidden(AccountError):
    """The account asking may not make, see or revoke this one: it holds a role or covers
    a site the asker does not."""


@dataclass(frozen=True)
class Account:
    """A teammate or an API key, once authenticated: a name and roles."""

    name: str
    roles: frozenset[str]
    stamp: str = ""  # of the teammate's password: see _account
    sites: frozenset[str] | None = None  # for keys scoped to sites; None: every site
    created_by: str | None = None  # the person of the account that made it; None: operator
    operator: bool = False  # SIGNOFF_ADMIN_KEY: grants anything, as the command line does

    @property
    def person(self) -> str:
        """Who this account counts as for four eyes: its maker's person, or itself."""
        return self.created_by or self.name

    def covers(self, site: str) -> bool:
        """Whether this account may see and act on the site's cards and users."""
        return self.sites is None or site in self.sites

    def refusal_to_grant(self, roles: Iterable[str], sites: Iterable[str] | None) -> str | None:
        """Why this account may not make, see or revoke an account holding ``roles`` for
        ``sites`` (None: every site); None when it may, because it holds and covers them all."""
        if self.operator:
            return None
        if beyond := sorted(set(roles) - self.roles):
            return f"you do not hold the role {', '.join(beyond)}, so you cannot grant it"
        if self.sites is None:
            return None
        if sites is None:
            return "you cover only some sites, so you cannot grant every site"
        if outside := sorted(set(sites) - self.sites):
            return f"you do not cover the site {', '.join(outside)}, so you cannot grant it"
        return None

    def teammate(
        self, channel: Channel, ip: str | None = None, user_agent: str | None = None
    ) -> Teammate:
        """The account deciding through ``channel``, from that client."""
        return Teammate(self.name, self.roles, channel, ip, user_agent, self.sites, self.person)


@dataclass(frozen=True)
class TeammateInfo:
    """A teammate as ``signoff users list`` shows it: everything but the password hash."""

    name: str
    roles: list[str]
    slack_user_id: str | None
    sites: list[str] | None
    disabled: bool
    created_at: datetime
    created_by: str | None  # the person of the account that made it; None: the command line


@dataclass(frozen=True)
class KeyInfo:
    """An API key as listings show it: never its secret, which is not kept anyway."""

    key_id: str
    name: str
    roles: list[str]
    sites: list[str] | None
    created_at: datetime
    revoked_at: datetime | None
    created_by: str | None  # the person of the account that made it; None: the command line


def parse_key_id(presented: str) -> str | None:
    """The public id of a key in ``sok_<id>_<secret>`` form, if it has that form."""
    if not presented.startswith(KEY_PREFIX):
        return None
    found, _, secret = presented[len(KEY_PREFIX) :].partition("_")
    return found if secret and KEY_ID_PATTERN.fullmatch(found) else None


def _roles(roles: list[str] | tuple[str, ...] | frozenset[str]) -> list[str]:
    if not roles:
        raise AccountError("give at least one --role")
    try:
        return sorted({check_role_name(role) for role in roles})
    except ValueError as exc:
        raise AccountError(str(exc)) from None


def _sites(sites: list[str] | None) -> list[str] | None:
    if sites is None:
        return None
    if not sites:
        raise AccountError("a key scoped to sites needs at least one --site")
    for site in sites:
        if not SITE_PATTERN.fullmatch(site):
            raise AccountError(f"site {site!r}: site names are lowercase letters, digits, - and _")
    return sorted(set(sites))


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    def __init__(self, engine: AsyncEngine, admin_key: str | None = None) -> None:
        self.engine = engine
        self.admin_key = admin_key
        self.hasher = PasswordHasher()
        # Checked against when a name is unknown, so a login takes as long either way.
        self._decoy: str | None = None

    # Teammates ----------------------------------------------------------------------------
    async def create_teammate(
        self,
        name: str,
        password: str,
        roles: list[str],
        slack_user_id: str | None = None,
        sites: list[str] | None = None,
    ) -> None:
        if not NAME_PATTERN.fullmatch(name):
            raise AccountError(
                f"name {name!r}: use letters, digits, '.', '_', '@' and '-', up to 64 characters"
            )
        if slack_user_id and not SLACK_USER_PATTERN.fullmatch(slack_user_id):
            raise AccountError(f"Slack user id {slack_user_id!r}: expected one like U012AB3CD")
        password_hash = await self._hash(password)
        row = {
            "name": name,
            "password_hash": password_hash,
            "roles": _roles(roles),
            "slack_user_id": slack_user_id or None,
            "sites": _sites(sites),
            "disabled": False,
            "created_at": _now(),
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(teammates), row)
        except IntegrityError:
            raise AccountExists(
                f"a teammate named {name!r} or linked to that Slack user already exists"
            ) from None

    async def set_password(self, name: str, password: str) -> bool:
        """Give a teammate a new password; False if there is no teammate of that name."""
        password_hash = await self._hash(password)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(teammates)
                .where(teammates.c.name == name)
                .values(password_hash=password_hash)
            )
        return bool(result.rowcount)

    async def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable a teammate (out at once: every request reads them anew) or enable them."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(teammates).where(teammates.c.name == name).values(disabled=disabled)
            )
        return bool(result.rowcount)

    async def _hash(self, password: str) -> str:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _decoy_hash(self) -> str:
        """A hash to check unknown names against; made at the first need, hashing is slow."""
        if self._decoy is None:
            self._decoy = await asyncio.to_thread(self.hasher.hash, secrets.token_urlsafe(16))
        return self._decoy

    async def login(self, name: str, password: str) -> Account | None:
        """The teammate, if the password is theirs; None otherwise (same time either way)."""
        row = await self._teammate_row(teammates.c.name == name)
        stored: str = row["password_hash"] if row else await self._decoy_hash()
        try:
            await asyncio.to_thread(self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row["disabled"]:
            return None
        if self.hasher.check_needs_rehash(stored):
            rehashed = await asyncio.to_thread(self.hasher.hash, password)
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(teammates).where(teammates.c.name == name).values(password_hash=rehashed)
                )
        return _account(row)

    async def teammate(self, name: str) -> Account | None:
        """A teammate by name, as they are now (a dashboard login re-reads its roles)."""
        row = await self._teammate_row(teammates.c.name == name)
        return _account(row) if row and not row["disabled"] else None

    async def slack_teammate(self, slack_user_id: str) -> Account | None:
        row = await self._teammate_row(teammates.c.slack_user_id == slack_user_id)
        return _account(row) if row and not row["disabled"] else None

    async def list_teammates(self) -> list[TeammateInfo]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(teammates).order_by(teammates.c.name))
            return [
                TeammateInfo(
                    r.name,
                    r.roles,
                    r.slack_user_id,
                    r.sites,
                    r.disabled,
                    r.created_at,
                    r.created_by,
                )
                for r in rows
            ]

    async def _teammate_row(self, where: Any) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(teammates).where(where))).first()
        return dict(row._mapping) if row else None

    # API keys -----------------------------------------------------------------------------
    async def create_key(
        self,
        name: str,
        roles: list[str],
        sites: list[str] | None = None,
        by: Account | None = None,
    ) -> str:
        """A new key, made ``by`` an account (None: by the operator, on the command line);
        the only time its full text exists outside the caller is now."""
        if not NAME_PATTERN.fullmatch(name):
            # As teammates' names: a key's name signs its decisions (teammate:key:<name>).
            raise AccountError(
                f"key name {name!r}: use letters, digits, '.', '_', '@' and '-', up to 64 "
                "characters (what it is for: refund-desk)"
            )
        if name == ADMIN_KEY_ID:
            raise AccountExists(f"the key name {name!r} is kept for SIGNOFF_ADMIN_KEY")
        checked_roles, checked_sites = _roles(roles), _sites(sites)
        if by is not None and (why := by.refusal_to_grant(checked_roles, checked_sites)):
            raise AccountForbidden(why)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        row = {
            "key_id": key_id,
            "name": name,
            "secret_hash": _digest(secret),
            "roles": checked_roles,
            "sites": checked_sites,
            "created_at": _now(),
            "created_by": by.person if by is not None else None,
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(api_keys), row)
        except IntegrityError:
            # Names sign decisions, so even a revoked key's name is not given again.
            raise AccountExists(f"a key named {name!r} already exists") from None
        return f"{KEY_PREFIX}{key_id}_{secret}"

    async def revoke_key(self, key_id: str, by: Account | None = None) -> bool:
        """Revoke a live key; False if there is none with that id. An account ``by`` may
        revoke only a key it could have made (AccountForbidden otherwise)."""
        if not KEY_ID_PATTERN.fullmatch(key_id):
            return False  # no key has such an id
        live = (api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        async with self.engine.begin() as conn:
            if by is not None:
                row = (await conn.execute(select(api_keys).where(*live))).first()
                if row is None:
                    return False
                if why := by.refusal_to_grant(row.roles, row.sites):
                    raise AccountForbidden(why)
            result = await conn.execute(update(api_keys).where(*live).values(revoked_at=_now()))
        return bool(result.rowcount)

    async def list_keys(self, by: Account | None = None) -> list[KeyInfo]:
        """Every key, revoked ones too (they stay on record), oldest first; for an account
        ``by``, only those it could have made."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(api_keys).order_by(api_keys.c.created_at))
            keys = [
                KeyInfo(
                    r.key_id, r.name, r.roles, r.sites, r.created_at, r.revoked_at, r.created_by
                )
                for r in rows
            ]
        return [k for k in keys if by is None or by.refusal_to_grant(k.roles, k.sites) is None]

    async def authenticate_key(self, presented: str) -> Account | None:
        """The key's name and roles, or None for anything but a live key."""
        if self.admin_key and hmac.compare_digest(presented.encode(), self.admin_key.encode()):
            return Account(f"key:{ADMIN_KEY_ID}", frozenset({ADMIN}), operator=True)
        found = parse_key_id(presented)
        if found is None:
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_id == found))).first()
        if row is None or row.revoked_at is not None:
            return None
        secret = presented.removeprefix(f"{KEY_PREFIX}{found}_")
        if not hmac.compare_digest(_digest(secret), row.secret_hash):
            return None
        sites = frozenset(row.sites) if row.sites is not None else None
        return Account(
            f"key:{row.name}", frozenset(row.roles), sites=sites, created_by=row.created_by
        )


def _account(row: dict[str, Any]) -> Account:
    # The stamp changes with the password hash: a login made before a new password was set
    # no longer matches, so setting one ends every earlier login.
    stamp = _digest(row["password_hash"])[:16]
    sites = frozenset(row["sites"]) if row["sites"] is not None else None
    return Account(row["name"], frozenset(row["roles"]), stamp, sites, row["created_by"])
