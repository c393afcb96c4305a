"""Settings from a TOML file and the environment, the environment winning.

A bad value stops start-up with a message that names the setting.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from signoff.engine.notify import EventType
from signoff.extras import missing_extra

MIN_SECRET_LENGTH = 16
DEFAULT_AUDIT_EXPORTS = 4
MAX_AUDIT_EXPORTS = 64  # each holds a database connection while it streams
DEFAULT_EXPORT_IDLE_TIMEOUT = 30.0
DEFAULT_SESSION_TTL = 1800.0
DEFAULT_SESSION_LIFETIME = 24 * 3600.0
MAX_SECONDS = 366 * 24 * 3600.0  # the longest duration a setting takes
_ORIGIN = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:(\d{1,5}|\*))?$")
SITE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TABLES = {"sites", "llm", "slack", "webhooks"}
KNOWN_KEYS = {
    "secret",
    "store",
    "audit",
    "session_ttl",
    "session_lifetime",
    "admin_key",
    "sweep_interval",
    "lease_margin",
    "audit_retention_days",
    "audit_purge_interval",
    "audit_exports",
    "audit_export_idle_timeout",
    "previous_secrets",
    "address_message_rate",
    "address_session_rate",
} | TABLES


# In a site's origins: the origin that serves signoff itself (its /demo page, say).
SELF = "self"


class ConfigError(ValueError):
    """Start-up stops with this message."""


@dataclass(frozen=True)
class Site:
    name: str
    origins: tuple[str, ...]
    # Days its audit rows are kept; None: the server-wide setting (by default, forever).
    audit_retention_days: int | None = None
    # What the widget shows a visitor with an empty conversation: a greeting from the bot
    # (by its name) and messages to try, each sent with one click.
    greeting: str | None = None
    suggestions: tuple[str, ...] = ()
    bot_name: str | None = None
    # Its picture in the panel's header: an image URL (or a data: image); without one the
    # header shows the bot name's first letter.
    bot_avatar: str | None = None
    # Actions the host page's own buttons may ask for (Signoff.call); each opens a card.
    page_actions: tuple[str, ...] = ()
    # Whether the bot hears a teammate's reason for rejecting (it may name people or
    # rules the team keeps to itself, so it stays with the team unless the site says so).
    team_reasons_to_bot: bool = False

    def welcome(self) -> dict[str, Any]:
        """The site's part of the ``welcome`` frame: only what it sets."""
        shown = {
            "greeting": self.greeting,
            "bot_name": self.bot_name,
            "bot_avatar": self.bot_avatar,
        }
        welcome: dict[str, Any] = {k: v for k, v in shown.items() if v is not None}
        if self.suggestions:
            welcome["suggestions"] = list(self.suggestions)
        return welcome

    def allows(self, origin: str | None, host: str | None = None) -> bool:
        """Whether a page from ``origin`` may use this site; ``host`` is the request's Host."""
        if origin is None:
            return False
        own = {f"http://{host}", f"https://{host}"} if host else set()
        return any(origin in own if p == SELF else origin_matches(p, origin) for p in self.origins)


def origin_matches(pattern: str, origin: str) -> bool:
    """Exact match, or ``scheme://host:*`` for any port of that host (and no port)."""
    if pattern.endswith(":*"):
        base = pattern[:-2]
        return origin == base or (
            origin.startswith(base + ":") and origin[len(base) + 1 :].isdigit()
        )
    return origin == pattern.rstrip("/")


@dataclass
class Settings:
    secret: str
    # False when a command that needs no secret was given none, and ``secret`` was made
    # up for this run: nothing lasting may be signed with it.
    secret_given: bool = True
    # Secrets used before the current one: `signoff audit verify` checks rows chained
    # under them too, so a rotated secret does not break the chain's evidence.
    previous_secrets: tuple[str, ...] = ()
    store: str = "memory://"
    audit: str = "sqlite:///signoff.db"
    session_ttl: float = DEFAULT_SESSION_TTL
    # How long a session may be resumed from its start, however busy: a stolen token is
    # not good for ever.
    session_lifetime: float = DEFAULT_SESSION_LIFETIME
    admin_key: str | None = None
    sweep_interval: float = 1.0
    # How long past its calls' run timeouts a claimed card is presumed abandoned.
    lease_margin: float = 30.0
    sites: dict[str, Site] = field(default_factory=dict)
    llm: LLMSettings | None = None
    slack: SlackSettings | None = None
    webhooks: tuple[WebhookSettings, ...] = ()
    audit_retention_days: int | None = None  # None: audit rows are kept forever
    audit_purge_interval: float = 3600.0
    # Messages and decisions per second one client address may send over all its sessions
    # (a burst of six seconds' worth first), and new sessions it may open per minute.
    address_message_rate: float = 10.0
    address_session_rate: float = 30.0
    # CSV exports running at once on one server, each on a connection of their own pool;
    # and how long an export's client may read nothing before it is cut off.
    audit_exports: int = DEFAULT_AUDIT_EXPORTS
    audit_export_idle_timeout: float = DEFAULT_EXPORT_IDLE_TIMEOUT

    def retention(self) -> Callable[[str], int | None]:
        """How many days each site's audit rows are kept (None: for ever): the site's own
        setting, else the server's. Only the settings say: a purge from the command line
        and the server's own purges must agree."""

        def days(site: str) -> int | None:
            own = self.sites[site].audit_retention_days if site in self.sites else None
            return own if own is not None else self.audit_retention_days

        return days


# The most a limit per client address may be set to: past it, a limit no longer limits, and
# its burst would not fit in a number.
MAX_ADDRESS_RATE = 1_000_000.0


def _rate(name: str, value: Any) -> float:
    rate = _positive(name, value)
    if rate > MAX_ADDRESS_RATE:
        raise ConfigError(f"{name}: at most {MAX_ADDRESS_RATE:,.0f}, got {value!r}")
    return rate


def _positive(name: str, value: Any) -> float:
    """A number of seconds: positive, and at most MAX_SECONDS (a year), past which times
    computed from it stop being times (1e308 seconds from now is no date)."""
    if isinstance(value, bool):  # TOML `true` is not a number of seconds
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise ConfigError(f"{name}: must be a positive number of seconds, got {value!r}")
    if number > MAX_SECONDS:
        raise ConfigError(f"{name}: at most {MAX_SECONDS:,.0f} seconds (a year), got {value!r}")
    return number


MIN_ADMIN_KEY_LENGTH = 32


def _admin_key(name: str, value: Any) -> str | None:
    """The bootstrap admin key: long enough that it cannot be guessed through the API."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) < MIN_ADMIN_KEY_LENGTH:
        raise ConfigError(
            f"{name}: must be a string of at least {MIN_ADMIN_KEY_LENGTH} characters "
            "(e.g. openssl rand -hex 32)"
        )
    return value


def _sites(raw: Any) -> dict[str, Site]:
    if not isinstance(raw, dict):
        raise ConfigError("sites: expected a table of sites, e.g. [sites.shop]")
    sites = {}
    for name, table in raw.items():
        origins = table.get("origins") if isinstance(table, dict) else None
        if isinstance(table, dict):
            _known_only(
                f"sites.{name}",
                table,
                {"origins", "audit_retention_days", "team_reasons_to_bot", *WIDGET_OPTIONS},
            )
        welcome = (
            {key: table[key] for key in WIDGET_OPTIONS if key in table}
            if isinstance(table, dict)
            else {}
        )
        site = make_site(name, origins, **welcome)
        days = table.get("audit_retention_days")
        if days is not None:
            days = _whole_days(f"sites.{name}.audit_retention_days", days)
        reasons = table.get("team_reasons_to_bot", False)
        if not isinstance(reasons, bool):
            raise ConfigError(f"sites.{name}.team_reasons_to_bot: expected true or false")
        sites[name] = replace(site, audit_retention_days=days, team_reasons_to_bot=reasons)
    return sites


def _previous_secrets(name: str, value: Any) -> tuple[str, ...]:
    """A TOML list of strings, or the environment's secrets separated by spaces."""
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name}: expected a list of secrets")
    if any(len(v) < MIN_SECRET_LENGTH for v in value):
        raise ConfigError(f"{name}: each must be at least {MIN_SECRET_LENGTH} characters")
    return tuple(value)


def _whole_days(name: str, value: Any) -> int:
    """A whole, positive number of days (TOML integer, or digits in the environment)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a whole number of days, at least 1, got {value!r}")
    return value


# What a site sets for its widget and pages, and how long each may be.
WIDGET_OPTIONS = ("greeting", "suggestions", "bot_name", "bot_avatar", "page_actions")
MAX_GREETING = 500
MAX_SUGGESTIONS = 6
MAX_SUGGESTION = 80
MAX_BOT_NAME = 40
# Sent in every welcome frame: a small picture, or a link to one.
MAX_BOT_AVATAR = 2048
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+={0,2}")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_ACTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _action_names(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and _ACTION_NAME.fullmatch(v) for v in value
    ):
        raise ConfigError(f"{name}: expected a list of action names")
    return tuple(value)


def _text(name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ConfigError(f"{name}: expected text of 1 to {limit} characters")
    if any(ord(c) < 32 and c != "\n" for c in value):
        raise ConfigError(f"{name}: control characters are not allowed")
    return value.strip()


def _avatar(name: str, value: Any) -> str:
    """An image URL the widget may load: https (http only on this machine, for trying it
    out), or a base64 data: image; nothing a page would run or navigate to."""
    fix = (
        f"{name}: expected an https:// image URL or a data:image/png;base64,... of at most "
        f"{MAX_BOT_AVATAR} characters"
    )
    if not isinstance(value, str) or len(value) > MAX_BOT_AVATAR:
        raise ConfigError(fix)
    if _DATA_IMAGE.fullmatch(value):
        return value
    url = urlsplit(value)
    local = url.scheme == "http" and url.netloc.split(":")[0] in _LOCAL_HOSTS
    if (url.scheme != "https" and not local) or not url.hostname or not value.isprintable():
        raise ConfigError(fix)
    if any(c.isspace() or c in "\"'<>" for c in value):
        raise ConfigError(f"{name}: spaces and quotes must be percent-encoded in a URL")
    return value


def make_site(
    name: str,
    origins: Any,
    greeting: Any = None,
    suggestions: Any = (),
    bot_name: Any = None,
    page_actions: Any = (),
    bot_avatar: Any = None,
) -> Site:
    """A checked site: a valid name and a list of origins (``:*`` for any port), and what
    its widget shows a new conversation (``greeting``, ``suggestions``, ``bot_name``,
    ``bot_avatar``)."""
    if not isinstance(name, str) or not SITE_PATTERN.fullmatch(name):
        raise ConfigError(f"sites.{name}: site names are lowercase letters, digits, - and _")
    if not isinstance(origins, list | tuple) or not all(isinstance(o, str) for o in origins):
        raise ConfigError(f"sites.{name}.origins: expected a list of origins")
    for origin in origins:
        if origin != SELF and not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"sites.{name}.origins: {origin!r} is not an origin like https://shop.example"
            )
    if not isinstance(suggestions, list | tuple) or len(suggestions) > MAX_SUGGESTIONS:
        raise ConfigError(f"sites.{name}.suggestions: expected a list of at most {MAX_SUGGESTIONS}")
    return Site(
        name,
        tuple(origins),
        greeting=None
        if greeting is None
        else _text(f"sites.{name}.greeting", greeting, MAX_GREETING),
        suggestions=tuple(
            _text(f"sites.{name}.suggestions", s, MAX_SUGGESTION) for s in suggestions
        ),
        page_actions=_action_names(f"sites.{name}.page_actions", page_actions),
        bot_name=None
        if bot_name is None
        else _text(f"sites.{name}.bot_name", bot_name, MAX_BOT_NAME),
        bot_avatar=None if bot_avatar is None else _avatar(f"sites.{name}.bot_avatar", bot_avatar),
    )


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    demo: bool = False,
    need_secret: bool = True,
) -> Settings:
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if config_file is not None:
        try:
            raw = tomllib.loads(Path(config_file).read_text())
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config: {config_file} is not valid TOML: {exc}") from None
        _known_only("--config", raw, KNOWN_KEYS)
    _known_variables(env)
    values = {key: raw[key] for key in KNOWN_KEYS - TABLES if key in raw}
    # Where each value came from, to name it in an error: the variable or the file's key.
    source = {key: f"{config_file}: {key}" for key in values}
    for key in KNOWN_KEYS - TABLES:
        name = "SIGNOFF_" + key.upper()
        if env.get(name):
            values[key] = env[name]
            source[key] = name

    def named(key: str) -> str:
        return source.get(key, "SIGNOFF_" + key.upper())

    secret = values.get("secret")
    secret_given = bool(secret)
    if not secret:
        if not demo and need_secret:
            raise ConfigError("SIGNOFF_SECRET: required; set it to a long random string")
        # The demo's sessions need not outlive it; other uses (signoff db) sign nothing.
        secret = secrets.token_urlsafe(32)
    if not isinstance(secret, str):
        raise ConfigError(f"{named('secret')}: expected a string, got {type(secret).__name__}")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{named('secret')}: must be at least {MIN_SECRET_LENGTH} characters")
    # The store and audit URLs are checked where they are opened, before serving.
    return Settings(
        secret=secret,
        secret_given=secret_given,
        previous_secrets=_previous_secrets(
            named("previous_secrets"), values.get("previous_secrets", ())
        ),
        store=str(values.get("store", "memory://")),
        audit=str(values.get("audit", "sqlite:///signoff.db")),
        session_ttl=_positive(named("session_ttl"), values.get("session_ttl", DEFAULT_SESSION_TTL)),
        session_lifetime=_positive(
            named("session_lifetime"), values.get("session_lifetime", DEFAULT_SESSION_LIFETIME)
        ),
        admin_key=_admin_key(named("admin_key"), values.get("admin_key")),
        sweep_interval=_positive(named("sweep_interval"), values.get("sweep_interval", 1.0)),
        lease_margin=_positive(named("lease_margin"), values.get("lease_margin", 30.0)),
        sites=_sites(raw.get("sites", {})),
        llm=_llm(raw.get("llm", {}), env, config_file),
        slack=_slack(raw.get("slack", {}), env, config_file),
        webhooks=_webhooks(raw.get("webhooks", []), env),
        audit_purge_interval=_positive(
            named("audit_purge_interval"), values.get("audit_purge_interval", 3600.0)
        ),
        address_message_rate=_rate(
            named("address_message_rate"), values.get("address_message_rate", 10.0)
        ),
        address_session_rate=_rate(
            named("address_session_rate"), values.get("address_session_rate", 30.0)
        ),
        audit_retention_days=(
            _whole_days(named("audit_retention_days"), values["audit_retention_days"])
            if "audit_retention_days" in values
            else None
        ),
        audit_exports=_whole(
            named("audit_exports"),
            values.get("audit_exports", DEFAULT_AUDIT_EXPORTS),
            1,
            MAX_AUDIT_EXPORTS,
        ),
        audit_export_idle_timeout=_positive(
            named("audit_export_idle_timeout"),
            values.get("audit_export_idle_timeout", DEFAULT_EXPORT_IDLE_TIMEOUT),
        ),
    )


# Variables with the SIGNOFF_ prefix that the command line reads, not the settings.
OTHER_VARIABLES = {"SIGNOFF_HOST", "SIGNOFF_PORT", "SIGNOFF_WORKER_SPEC"}


def _known_variables(env: Mapping[str, str]) -> None:
    """Refuse SIGNOFF_* variables nobody reads, as unknown TOML keys are: most often a
    misspelt one, whose setting would silently keep its default."""
    known = {"SIGNOFF_" + key.upper() for key in KNOWN_KEYS - TABLES} | OTHER_VARIABLES
    known |= {f"SIGNOFF_LLM_{key.upper()}" for key in LLM_KEYS}
    known |= {f"SIGNOFF_SLACK_{key.upper()}" for key in SLACK_KEYS}
    known |= {"SIGNOFF_WEBHOOK_URL", "SIGNOFF_WEBHOOK_SECRET"}
    unknown = sorted(name for name in env if name.startswith("SIGNOFF_") and name not in known)
    if unknown:
        raise ConfigError(f"unknown environment variables {unknown}: no setting has that name")


def _known_only(name: str, raw: Mapping[str, Any], keys: Collection[str]) -> None:
    """Refuse settings nobody reads: most often a misspelt one."""
    unknown = set(raw) - set(keys)
    if unknown:
        raise ConfigError(f"{name}: unknown settings {sorted(unknown)}")


def _table(
    name: str, raw: Any, keys: set[str], env: Mapping[str, str], config_file: object
) -> tuple[dict[str, Any], Callable[[str], str]]:
    """A table such as ``[llm]`` with its ``SIGNOFF_<NAME>_<KEY>`` variables winning, and
    what names a key in an error: its variable, or the file and the table's key when the
    file set it."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a table, [{name}]")
    _known_only(name, raw, keys)
    values = dict(raw)
    source = {key: f"{config_file}: {name}.{key}" for key in raw}
    for key in keys:
        variable = f"SIGNOFF_{name.upper()}_{key.upper()}"
        if env.get(variable):
            values[key] = env[variable]
            source[key] = variable

    def named(key: str) -> str:
        return source.get(key, f"SIGNOFF_{name.upper()}_{key.upper()}")

    return values, named


def _http_url(name: str, value: str, example: str) -> str:
    try:
        url = urlsplit(value)
        usable = url.scheme in {"http", "https"} and bool(url.hostname)
    except ValueError:  # a malformed host, such as an unclosed [IPv6
        usable = False
    if not usable:
        raise ConfigError(f"{name}: expected an http(s) URL like {example}, got {value!r}")
    return value


# The LLM bot ---------------------------------------------------------------------------

LLM_KEYS = {
    "base_url",
    "api_key",
    "model",
    "system_prompt",
    "system_prompt_file",
    "timeout",
    "max_retries",
}
DEFAULT_LLM_TIMEOUT = 30.0
DEFAULT_LLM_RETRIES = 2
MAX_LLM_RETRIES = 10


@dataclass(frozen=True)
class LLMSettings:
    """An OpenAI-compatible model for the bot: ``[llm]`` and ``SIGNOFF_LLM_*``.

    ``system_prompt`` None means the bot's own default prompt.
    """

    base_url: str
    model: str
    api_key: str | None = None
    system_prompt: str | None = None
    timeout: float = DEFAULT_LLM_TIMEOUT
    max_retries: int = DEFAULT_LLM_RETRIES


def _llm(raw: Any, env: Mapping[str, str], config_file: object) -> LLMSettings | None:
    """The ``[llm]`` table with ``SIGNOFF_LLM_*`` winning; None without a base URL."""
    values, named = _table("llm", raw, LLM_KEYS, env, config_file)
    for key, value in values.items():
        if key not in {"timeout", "max_retries"} and not isinstance(value, str):
            raise ConfigError(f"{named(key)}: expected a string, got {value!r}")
    base_url = values.pop("base_url", "")
    if not base_url:
        if values:
            raise ConfigError(
                f"{named('base_url')}: required with the other llm settings "
                "(for OpenAI itself, https://api.openai.com/v1)"
            )
        return None
    _http_url(named("base_url"), base_url, "https://api.openai.com/v1")
    if needed := missing_extra("llm", "SIGNOFF_LLM_BASE_URL (a model for the bot)"):
        raise ConfigError(needed)
    if not values.get("model"):
        raise ConfigError(f"{named('model')}: required with SIGNOFF_LLM_BASE_URL")
    prompt = values.get("system_prompt")
    if "system_prompt_file" in values:
        if prompt is not None:
            raise ConfigError(
                f"{named('system_prompt_file')}: give a system prompt or a file, not both"
            )
        path = values["system_prompt_file"]
        try:
            prompt = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{named('system_prompt_file')}: cannot read {path}: {exc}") from None
    return LLMSettings(
        base_url=base_url,
        model=values["model"],
        api_key=values.get("api_key") or None,
        system_prompt=prompt,
        timeout=_positive(named("timeout"), values.get("timeout", DEFAULT_LLM_TIMEOUT)),
        max_retries=_whole(
            named("max_retries"), values.get("max_retries", DEFAULT_LLM_RETRIES), 0, MAX_LLM_RETRIES
        ),
    )


def _whole(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: expected a whole number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
    return value


# Slack ----------------------------------------------------------------------------------

SLACK_REQUIRED = ("bot_token", "signing_secret", "channel")
SLACK_KEYS = {*SLACK_REQUIRED, "api_url"}
SLACK_API_URL = "https://slack.com/api/"


@dataclass(frozen=True)
class SlackSettings:
    """Approvals in Slack: ``[slack]`` and ``SIGNOFF_SLACK_*``.

    ``api_url`` is the Web API's base URL; only a proxy or a test points it elsewhere.
    """

    bot_token: str
    signing_secret: str
    channel: str
    api_url: str = SLACK_API_URL


def _slack(raw: Any, env: Mapping[str, str], config_file: object) -> SlackSettings | None:
    """The ``[slack]`` table with ``SIGNOFF_SLACK_*`` winning; None when nothing is set.

    All or nothing: a Slack app half configured would post buttons nobody can use,
    or take clicks it cannot check.
    """
    values, named = _table("slack", raw, SLACK_KEYS, env, config_file)
    if not values:
        return None
    for key, value in values.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{named(key)}: expected a non-empty string, got {value!r}")
    missing = [f"SIGNOFF_SLACK_{key.upper()}" for key in SLACK_REQUIRED if key not in values]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: required with the other slack settings")
    if needed := missing_extra("slack", "SIGNOFF_SLACK_BOT_TOKEN (approvals in Slack)"):
        raise ConfigError(needed)
    return SlackSettings(
        bot_token=values["bot_token"],
        signing_secret=values["signing_secret"],
        channel=values["channel"],
        api_url=_http_url(named("api_url"), values.get("api_url", SLACK_API_URL), SLACK_API_URL),
    )


# Outgoing webhooks -----------------------------------------------------------------------

WEBHOOK_KEYS = {"url", "secret", "events", "timeout", "attempts", "backoff", "max_backoff"}
WEBHOOK_SECRET_PREFIX = "whsec_"
# The Standard Webhooks spec asks for keys of 24 to 64 random bytes.
MIN_WEBHOOK_SECRET_BYTES = 24
MAX_WEBHOOK_ATTEMPTS = 100


@dataclass(frozen=True)
class WebhookSettings:
    """One receiver of signed card events: ``[[webhooks]]`` or ``SIGNOFF_WEBHOOK_*``.

    The retry defaults spread 12 attempts over about 50 minutes (waits of 5 s doubling
    up to 10 minutes), so a receiver may be down for a deploy or an outage and still
    get every event.
    """

    url: str
    secret: str = field(repr=False)
    events: frozenset[EventType] = frozenset(EventType)
    timeout: float = 10.0  # seconds for one attempt: connect, send, answer
    attempts: int = 12
    backoff: float = 5.0  # the first wait between attempts; it doubles each time
    max_backoff: float = 600.0


def _webhooks(raw: Any, env: Mapping[str, str]) -> tuple[WebhookSettings, ...]:
    """Each ``[[webhooks]]`` table, and one more from ``SIGNOFF_WEBHOOK_URL``/``_SECRET``
    (it replaces a table with the same URL)."""
    if not isinstance(raw, list) or not all(isinstance(table, dict) for table in raw):
        raise ConfigError("webhooks: expected an array of tables, [[webhooks]]")
    hooks = []
    for i, table in enumerate(raw):
        _known_only(f"webhooks[{i}]", table, WEBHOOK_KEYS)
        hooks.append(_webhook(table, f"webhooks[{i}].{{}}".format))
    url, secret = env.get("SIGNOFF_WEBHOOK_URL"), env.get("SIGNOFF_WEBHOOK_SECRET")
    if secret and not url:
        raise ConfigError("SIGNOFF_WEBHOOK_URL: required with SIGNOFF_WEBHOOK_SECRET")
    if url:
        if not secret:
            raise ConfigError("SIGNOFF_WEBHOOK_SECRET: required with SIGNOFF_WEBHOOK_URL")
        hooks = [hook for hook in hooks if hook.url != url]
        hooks.append(
            _webhook({"url": url, "secret": secret}, lambda key: f"SIGNOFF_WEBHOOK_{key.upper()}")
        )
    return tuple(hooks)


def _webhook(table: dict[str, Any], setting: Callable[[str], str]) -> WebhookSettings:
    """One receiver; ``setting(key)`` names a key in errors (``webhooks[0].url``)."""
    url, secret = table.get("url"), table.get("secret")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{setting('url')}: required, an http(s) URL")
    _http_url(setting("url"), url, "https://hooks.example/signoff")
    if not isinstance(secret, str) or not secret:
        raise ConfigError(f"{setting('secret')}: required, like whsec_<base64>")
    _webhook_secret(setting("secret"), secret)
    events = table.get("events", [str(event) for event in EventType])
    if not isinstance(events, list) or not events:
        raise ConfigError(f"{setting('events')}: expected a list of event types")
    known = {str(event) for event in EventType}
    strange = [event for event in events if not isinstance(event, str) or event not in known]
    if strange:
        raise ConfigError(
            f"{setting('events')}: unknown event types {strange}; known: {sorted(known)}"
        )
    backoff = _positive(setting("backoff"), table.get("backoff", WebhookSettings.backoff))
    max_backoff = _positive(
        setting("max_backoff"), table.get("max_backoff", WebhookSettings.max_backoff)
    )
    if max_backoff < backoff:
        raise ConfigError(f"{setting('max_backoff')}: must not be less than backoff")
    return WebhookSettings(
        url=url,
        secret=secret,
        events=frozenset(EventType(event) for event in events),
        timeout=_positive(setting("timeout"), table.get("timeout", WebhookSettings.timeout)),
        attempts=_whole(
            setting("attempts"),
            table.get("attempts", WebhookSettings.attempts),
            1,
            MAX_WEBHOOK_ATTEMPTS,
        ),
        backoff=backoff,
        max_backoff=max_backoff,
    )


def _webhook_secret(name: str, secret: str) -> None:
    """A Standard Webhooks secret: ``whsec_`` and base64 of at least 24 random bytes."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ConfigError(f"{name}: expected whsec_ followed by base64")
    try:
        body = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
        # Padding is optional in the spec's examples; the rest must be base64.
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        raise ConfigError(f"{name}: the part after whsec_ is not valid base64") from None
    if len(key) < MIN_WEBHOOK_SECRET_BYTES:
        raise ConfigError(
            f"{name}: must decode to at least {MIN_WEBHOOK_SECRET_BYTES} bytes, got {len(key)}"
        )
