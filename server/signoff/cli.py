"""The ``signoff`` command: serve, demo, token, db, users, keys, audit."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import json
import os
import secrets
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from signoff import __version__
from signoff.accounts import AccountError, Accounts
from signoff.app import Signoff
from signoff.audit import audit_revision, open_audit
from signoff.audit.commands import add_audit_commands, audit_command
from signoff.audit.entries import AuditError
from signoff.audit.migrate import head
from signoff.config import ConfigError, Settings, load_settings
from signoff.core.frames import MAX_FRAME_BYTES, iso
from signoff.core.tokens import TokenError, sign_user_token
from signoff.demo.agents import BOTS as DEMO_BOTS
from signoff.logs import LOG_FORMATS, LOG_LEVELS, install_redaction, log_config
from signoff.store import StoreError, StoreUnavailable, open_store

if TYPE_CHECKING:
    from starlette.applications import Starlette

# How a process uvicorn starts (--workers, --reload) learns what to serve.
WORKER_ENV = "SIGNOFF_WORKER_SPEC"
# The collector's thresholds while serving; Python's default is (700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 10)
DEMO_TEAMMATE = "lead"
DEMO_ROLE = "support-lead"


def load_app(target: str, app_dir: str = ".") -> Signoff:
    """``package.module:name`` → the Signoff object it names, importable from ``app_dir``."""
    sys.path.insert(0, os.path.abspath(app_dir))
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"APP: cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attr or "app", None)
    if not isinstance(app, Signoff):
        raise ConfigError(f"APP: {target!r} is not a Signoff object")
    return app


def serve(signoff: Signoff | None, settings: Settings, args: argparse.Namespace) -> None:
    """Serve ``signoff`` in this process; or, with ``--workers`` or ``--reload``, in
    processes uvicorn starts, each building the app named on the command line."""
    import uvicorn

    processes = getattr(args, "workers", 1)
    reload = getattr(args, "reload", False)
    if processes > 1 and settings.store.startswith("memory:"):
        raise ConfigError(
            f"--workers {processes}: the memory store is one process's own, so a widget that "
            "reconnects to another worker would find its session gone; use a shared store "
            "(SIGNOFF_STORE=redis://...) or one worker per instance"
        )
    # Before the port opens, so a store or an audit database that cannot be reached (or
    # migrated) stops start-up with one line naming its setting, not a traceback.
    asyncio.run(store_reachable(settings.store))
    asyncio.run(audit_revision(settings.audit, upgrade=True, secret=settings.secret))
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "ws": "websockets-sansio",
        "ws_max_size": MAX_FRAME_BYTES,
        # Chat frames are small; compression would cost CPU and a zlib context per socket.
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "root_path": args.root_path,
        "proxy_headers": args.proxy_headers,
        "forwarded_allow_ips": args.forwarded_allow_ips,
        "log_config": log_config(args.log_level, args.log_format),
        "log_level": args.log_level,
    }
    if signoff is None:  # uvicorn imports the app by name in each process it starts
        os.environ[WORKER_ENV] = json.dumps(
            {"app": args.app, "app_dir": os.path.abspath(args.app_dir), "config": args.config}
        )
        uvicorn.run(
            "signoff.cli:worker_app",
            factory=True,
            workers=processes,
            reload=reload,
            reload_dirs=[os.path.abspath(args.app_dir)] if reload else None,
            **options,
        )
        return
    config = uvicorn.Config(signoff.asgi(settings), **options)
    tune_collector()
    # After uvicorn.Config, which configures logging: its handlers get the filter too.
    install_redaction()
    uvicorn.Server(config).run()


async def store_reachable(url: str) -> None:
    store = open_store(url)
    try:
        await store.ping()
    except StoreUnavailable as exc:
        raise StoreError(f"SIGNOFF_STORE: {exc}") from None
    finally:
        await store.close()


def tune_collector() -> None:
    """With the default, a young pass every 700 allocations catches the objects of frames
    in flight and promotes them, so the old generation grows and is collected in full
    every few seconds under load: a pause of 100-200 ms with a thousand sessions, on every
    socket at once. Rarer young passes let those objects die by reference count first.
    Cycles are still collected, only in bigger batches (a turn of signoff's own leaves
    none: ``benchmarks.engine_turns`` counts them)."""
    import gc

    gc.set_threshold(*GC_THRESHOLDS)
    # What is loaded by now (modules, the app, its actions and templates: about 100,000
    # objects) lives as long as the process; frozen, a full collection no longer walks
    # it, which took about 25 ms on every full pass.
    gc.collect()
    gc.freeze()


def worker_app() -> Starlette:
    """The app of one process uvicorn started (``--workers``, ``--reload``): built from
    the command's arguments, which reach it in the environment."""
    spec = json.loads(os.environ[WORKER_ENV])
    signoff = load_app(spec["app"], spec["app_dir"])
    settings = load_settings(spec["config"])
    tune_collector()
    install_redaction()  # uvicorn has configured this process's logging by now
    return signoff.asgi(settings)


def port_number(text: str) -> int:
    """A TCP port, for argparse: refused outside 1-65535, rather than wrapped around."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1-65535)")
    return port


def listen_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--host and --port from the environment when not given: SIGNOFF_HOST, SIGNOFF_PORT,
    then PORT (as platforms that pick the port set it), then 127.0.0.1:8000."""
    if args.host is None:
        args.host = os.environ.get("SIGNOFF_HOST") or "127.0.0.1"
    if args.port is None:
        for name in ("SIGNOFF_PORT", "PORT"):
            if value := os.environ.get(name):
                try:
                    args.port = port_number(value)
                except argparse.ArgumentTypeError as exc:
                    parser.error(f"{name}: {exc}")
                break
        else:
            args.port = 8000


async def demo_teammate(audit_url: str, secret: str) -> str:
    """The demo's teammate ``lead`` (role ``support-lead``: approves big refunds), in the
    demo's audit database, with a new password, returned, at each start. The database is
    brought up to date first, with the demo's secret, as the demo server would."""
    audit = open_audit(audit_url, secret)
    try:
        await audit.upgrade()
        accounts = Accounts(audit.engine)
        password = secrets.token_urlsafe(12)
        if not await accounts.set_password(DEMO_TEAMMATE, password):
            await accounts.create_teammate(DEMO_TEAMMATE, password, [DEMO_ROLE])
        return password
    finally:
        await audit.close()


def read_password(from_stdin: bool) -> str:
    """A new teammate's password: the first line of stdin, or asked for twice."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise AccountError(
            "no terminal to ask for the password on: give it on stdin with --password-stdin"
        )
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        raise AccountError("the passwords do not match")
    return password


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


async def manage_accounts(args: argparse.Namespace, audit_url: str) -> None:
    """``signoff users ...`` and ``signoff keys ...`` on the audit database."""
    audit = open_audit(audit_url)
    try:
        await audit.upgrade()  # as `signoff db upgrade`: the tables may not exist yet
        accounts = Accounts(audit.engine)
        if args.command == "users" and args.verb == "create":
            await accounts.create_teammate(
                args.name, args.password, args.roles, args.slack_user, args.sites
            )
            print(f"teammate {args.name} created (roles: {', '.join(sorted(set(args.roles)))})")
        elif args.command == "users" and args.verb == "password":
            if not await accounts.set_password(args.name, args.password):
                raise AccountError(f"no teammate named {args.name!r}")
            print(f"teammate {args.name}: new password set; their dashboard logins have ended")
        elif args.command == "users" and args.verb in {"disable", "enable"}:
            if not await accounts.set_disabled(args.name, args.verb == "disable"):
                raise AccountError(f"no teammate named {args.name!r}")
            print(f"teammate {args.name} {args.verb}d")
        elif args.command == "users":
            print_table(
                ["NAME", "ROLES", "SLACK", "SITES", "BY", "CREATED", "DISABLED"],
                [
                    [
                        t.name,
                        ",".join(t.roles),
                        t.slack_user_id or "-",
                        ",".join(t.sites) if t.sites is not None else "*",
                        t.created_by or "-",
                        iso(t.created_at.timestamp()),
                        "yes" if t.disabled else "no",
                    ]
                    for t in await accounts.list_teammates()
                ],
            )
        elif args.verb == "create":
            print(await accounts.create_key(args.name, args.roles, args.sites))
            print("signoff: keep this key now; it cannot be shown again", file=sys.stderr)
        elif args.verb == "revoke":
            if not await accounts.revoke_key(args.key_id):
                raise AccountError(f"no live key with the id {args.key_id!r}")
            print(f"key {args.key_id} revoked")
        else:
            print_table(
                ["KEY_ID", "NAME", "ROLES", "SITES", "BY", "CREATED", "REVOKED"],
                [
                    [
                        k.key_id,
                        k.name,
                        ",".join(k.roles),
                        ",".join(k.sites) if k.sites is not None else "*",
                        k.created_by or "-",
                        iso(k.created_at.timestamp()),
                        iso(k.revoked_at.timestamp()) if k.revoked_at else "-",
                    ]
                    for k in await accounts.list_keys()
                ],
            )
    finally:
        await audit.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signoff", description=__doc__)
    parser.add_argument("--version", action="version", version=f"signoff {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="serve a Signoff app")
    serve_cmd.add_argument("app", help="the Signoff object, as package.module:name")
    serve_cmd.add_argument("--app-dir", default=".", help="where to import the app from")
    demo_cmd = commands.add_parser("demo", help="serve the demo shop")
    demo_cmd.add_argument(
        "--bot",
        choices=DEMO_BOTS,
        default="rules",
        help="who answers: the rule-based bot (rules), or the same rules as a scripted "
        "model behind an agent framework's adapter (pydantic-ai, langgraph, openai-agents: "
        "each needs its extra); a configured model ([llm]) wins over both",
    )
    serve_cmd.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes to serve with (1); more need a shared store (Redis)",
    )
    serve_cmd.add_argument(
        "--reload", action="store_true", help="restart when the app's files change (development)"
    )
    for cmd in (serve_cmd, demo_cmd):
        cmd.add_argument("--host", help="the address to listen on (SIGNOFF_HOST, else 127.0.0.1)")
        cmd.add_argument(
            "--port",
            type=port_number,
            help="the port to listen on (SIGNOFF_PORT, else PORT, else 8000)",
        )
        cmd.add_argument("--config", help="a TOML settings file")
        cmd.add_argument(
            "--root-path",
            default="",
            help="the path a proxy serves signoff at when it strips it (/chat), for the URLs "
            "signoff builds",
        )
        cmd.add_argument(
            "--proxy-headers",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="take the client's address from X-Forwarded-For, from --forwarded-allow-ips",
        )
        cmd.add_argument(
            "--forwarded-allow-ips",
            default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
            help="the proxies trusted with X-Forwarded-* (comma-separated; "
            "FORWARDED_ALLOW_IPS, else 127.0.0.1)",
        )
        cmd.add_argument("--log-level", choices=LOG_LEVELS, default="info")
        cmd.add_argument(
            "--log-format", choices=LOG_FORMATS, default="text", help="text lines or JSON lines"
        )

    token_cmd = commands.add_parser("token", help="sign a user token for a host page")
    token_cmd.add_argument("user_id")
    token_cmd.add_argument(
        "--ttl", type=float, default=300.0, help="seconds it stays valid (at most 3600)"
    )
    token_cmd.add_argument("--site", help="only valid for this site")
    token_cmd.add_argument("--config", help="a TOML settings file (for the secret)")

    db_cmd = commands.add_parser("db", help="the audit database's schema (SIGNOFF_AUDIT)")
    db_cmd.add_argument(
        "db_command",
        choices=["upgrade", "current"],
        help="upgrade: migrate it to the newest schema; current: show its schema revision",
    )
    db_cmd.add_argument("--config", help="a TOML settings file (for the audit URL)")

    users_cmd = commands.add_parser("users", help="teammates (in the audit database)")
    users = users_cmd.add_subparsers(dest="verb", required=True)
    user_create = users.add_parser("create", help="add a teammate; asks for a password")
    user_create.add_argument("name")
    user_create.add_argument("--slack-user", help="their Slack user id (U...), to decide in Slack")
    user_password = users.add_parser("password", help="set a new password; ends their logins")
    user_password.add_argument("name")
    for cmd in (user_create, user_password):
        cmd.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from stdin's first line",
        )
    users.add_parser("disable", help="refuse their logins, clicks and decisions").add_argument(
        "name"
    )
    users.add_parser("enable", help="let a disabled teammate in again").add_argument("name")
    users.add_parser("list", help="every teammate and their roles")
    keys_cmd = commands.add_parser("keys", help="API keys (in the audit database)")
    keys = keys_cmd.add_subparsers(dest="verb", required=True)
    key_create = keys.add_parser("create", help="make a key; it is shown once")
    key_create.add_argument("name", help="what the key is for")
    keys.add_parser("list", help="every key, revoked ones too; never their secrets")
    keys.add_parser("revoke", help="revoke a key").add_argument("key_id")
    for cmd in (user_create, key_create):
        cmd.add_argument(
            "--role", dest="roles", action="append", required=True, help="a role it holds (repeat)"
        )
        cmd.add_argument(
            "--site",
            dest="sites",
            action="append",
            help="only this site's cards (and users, for keys); repeat; every site if left out",
        )
    for cmd in [*users.choices.values(), *keys.choices.values()]:
        cmd.add_argument("--config", help="a TOML settings file (for the audit URL)")

    add_audit_commands(commands)

    args = parser.parse_args(argv)
    if args.command in {"serve", "demo"}:
        listen_defaults(parser, args)
    try:
        if args.command == "audit":
            # Only verify needs the secret: the chain's key is made from it.
            settings = load_settings(args.config, need_secret=args.verb == "verify")
            return audit_command(args, settings)
        if args.command in {"users", "keys"}:
            settings = load_settings(args.config, need_secret=False)
            if args.command == "users" and args.verb in {"create", "password"}:
                args.password = read_password(args.password_stdin)
            asyncio.run(manage_accounts(args, settings.audit))
        elif args.command == "token":
            settings = load_settings(args.config)
            print(sign_user_token(settings.secret, args.user_id, args.ttl, args.site))
        elif args.command == "db":
            settings = load_settings(args.config, need_secret=False)
            upgrade = args.db_command == "upgrade"
            # A migration may sign audit rows, with the server's secret if it is set.
            secret = settings.secret if settings.secret_given else None
            revision = asyncio.run(audit_revision(settings.audit, upgrade=upgrade, secret=secret))
            newest = " (newest)" if revision == head() else ""
            print(f"audit database: revision {revision or 'none'}{newest}")
        elif args.command == "demo":
            from signoff.demo import demo_app, demo_site

            settings = load_settings(args.config, demo=True)
            settings.sites.setdefault("demo", demo_site(args.host, args.port))
            bot = (
                f"model {settings.llm.model}"
                if settings.llm
                else "the rule-based bot"
                if args.bot == "rules"
                else f"the demo's rules through the {args.bot} adapter"
            )
            password = asyncio.run(demo_teammate(settings.audit, settings.secret))
            base = f"http://{args.host}:{args.port}"
            print(f"signoff demo: open {base}/demo ({bot})", flush=True)
            print(
                f"dashboard: {base}/dashboard (user {DEMO_TEAMMATE}, password {password})",
                flush=True,
            )
            serve(demo_app(settings.llm, args.bot), settings, args)
        else:
            settings = load_settings(args.config)
            if args.workers < 1:
                raise ConfigError(f"--workers {args.workers}: give 1 or more")
            # Loaded here too with several processes: a wrong name stops start-up once.
            app = load_app(args.app, args.app_dir)
            several = args.workers > 1 or args.reload
            serve(None if several else app, settings, args)
    except (ConfigError, StoreError, AuditError, TokenError, AccountError) as exc:
        print(f"signoff: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
