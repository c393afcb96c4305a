"""The ``signoff`` command: serve, demo, token, db."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import secrets
import sys
from collections.abc import Sequence

from signoff.accounts import AccountError, Accounts
from signoff.app import Signoff
from signoff.audit import audit_revision, open_audit
from signoff.audit.log import AuditError
from signoff.audit.migrate import head
from signoff.config import SELF, ConfigError, Settings, Site, load_settings
from signoff.core.frames import MAX_FRAME_BYTES
from signoff.core.tokens import TokenError, sign_user_token
from signoff.store import StoreError

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


def serve(signoff: Signoff, settings: Settings, host: str, port: int) -> None:
    import gc

    import uvicorn

    asgi = signoff.asgi(settings)
    # Before the port opens, so an audit database that cannot be reached or migrated
    # stops start-up with its setting named (the app's own start-up only logs it).
    asyncio.run(audit_revision(settings.audit, upgrade=True))
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_max_size=MAX_FRAME_BYTES,
        # Chat frames are small; compression would cost CPU and a zlib context per socket.
        ws_per_message_deflate=False,
        lifespan="on",
    )
    # With the default, a young pass every 700 allocations catches the objects of frames
    # in flight and promotes them, so the old generation grows and is collected in full
    # every few seconds under load: a pause of 100-200 ms with a thousand sessions, on
    # every socket at once. Rarer young passes let those objects die by reference count
    # first. Cycles are still collected, only in bigger batches.
    gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.Server(config).run()


def demo_site() -> Site:
    """The demo page's own origin, however it is reached, and local pages on any port."""
    return Site("demo", (SELF, "http://localhost:*", "http://127.0.0.1:*"))


async def demo_teammate(audit_url: str) -> str:
    """The demo's teammate ``lead`` (role ``support-lead``: approves big refunds), in the
    demo's audit database, with a new password, returned, at each start."""
    audit = open_audit(audit_url)
    try:
        await audit.upgrade()
        accounts = Accounts(audit.engine)
        password = secrets.token_urlsafe(12)
        if not await accounts.set_password(DEMO_TEAMMATE, password):
            await accounts.create_teammate(DEMO_TEAMMATE, password, [DEMO_ROLE])
        return password
    finally:
        await audit.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signoff", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="serve a Signoff app")
    serve_cmd.add_argument("app", help="the Signoff object, as package.module:name")
    serve_cmd.add_argument("--app-dir", default=".", help="where to import the app from")
    demo_cmd = commands.add_parser("demo", help="serve the demo shop")
    for cmd in (serve_cmd, demo_cmd):
        cmd.add_argument("--host", default="127.0.0.1")
        cmd.add_argument("--port", type=int, default=8000)
        cmd.add_argument("--config", help="a TOML settings file")

    token_cmd = commands.add_parser("token", help="sign a user token for a host page")
    token_cmd.add_argument("user_id")
    token_cmd.add_argument("--ttl", type=float, default=300.0, help="seconds it stays valid")
    token_cmd.add_argument("--site", help="only valid for this site")
    token_cmd.add_argument("--config", help="a TOML settings file (for the secret)")

    db_cmd = commands.add_parser("db", help="the audit database's schema (SIGNOFF_AUDIT)")
    db_cmd.add_argument(
        "db_command",
        choices=["upgrade", "current"],
        help="upgrade: migrate it to the newest schema; current: show its schema revision",
    )
    db_cmd.add_argument("--config", help="a TOML settings file (for the audit URL)")

    args = parser.parse_args(argv)
    try:
        if args.command == "token":
            settings = load_settings(args.config)
            print(sign_user_token(settings.secret, args.user_id, args.ttl, args.site))
        elif args.command == "db":
            settings = load_settings(args.config, need_secret=False)
            upgrade = args.db_command == "upgrade"
            revision = asyncio.run(audit_revision(settings.audit, upgrade=upgrade))
            newest = " (newest)" if revision == head() else ""
            print(f"audit database: revision {revision or 'none'}{newest}")
        elif args.command == "demo":
            from signoff.bots.demo import demo_app

            settings = load_settings(args.config, demo=True)
            settings.sites.setdefault("demo", demo_site())
            bot = f"model {settings.llm.model}" if settings.llm else "the rule-based bot"
            password = asyncio.run(demo_teammate(settings.audit))
            base = f"http://{args.host}:{args.port}"
            print(f"signoff demo: open {base}/demo ({bot})", flush=True)
            print(
                f"dashboard: {base}/dashboard (user {DEMO_TEAMMATE}, password {password})",
                flush=True,
            )
            serve(demo_app(settings.llm), settings, args.host, args.port)
        else:
            settings = load_settings(args.config)
            serve(load_app(args.app, args.app_dir), settings, args.host, args.port)
    except (ConfigError, StoreError, AuditError, TokenError, AccountError) as exc:
        print(f"signoff: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
