"""``signoff audit export | verify | purge``: the audit log from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from signoff.audit.entries import AuditError, AuditStatus
from signoff.audit.log import open_audit
from signoff.audit.migrate import head
from signoff.audit.query import AuditFilter, as_utc, csv_chunks
from signoff.audit.upkeep import purge, verify
from signoff.config import ConfigError, Settings
from signoff.core.chain import chain_key, key_id


def add_audit_commands(commands: Any) -> None:
    """The ``audit`` command group, on the ``signoff`` command's subparsers."""
    audit_cmd = commands.add_parser("audit", help="the audit log: export, verify, purge")
    verbs = audit_cmd.add_subparsers(dest="verb", required=True)
    export = verbs.add_parser("export", help="write rows as CSV, oldest first")
    export.add_argument(
        "--status",
        dest="statuses",
        action="append",
        choices=[str(s) for s in AuditStatus],
        help="only rows with this status (repeat for several)",
    )
    export.add_argument(
        "--since", type=instant, help="from this time on (ISO 8601; UTC if no offset)"
    )
    export.add_argument(
        "--until", type=instant, help="before this time (ISO 8601; UTC if no offset)"
    )
    export.add_argument("--conversation", help="one conversation's rows")
    export.add_argument("--action", help="one action's rows")
    export.add_argument(
        "--decided-by", help="auto, visitor, teammate, or one decider (teammate:ana, user:42)"
    )
    export.add_argument("--site", help="one site's rows")
    export.add_argument("-o", "--output", help="a file to write (default: standard output)")
    verbs.add_parser(
        "verify",
        help="check every site's hash chain; names the first edited, deleted or inserted row",
    )
    purge_cmd = verbs.add_parser("purge", help="delete rows past their site's retention now")
    purge_cmd.add_argument("--dry-run", action="store_true", help="count them, delete nothing")
    for cmd in verbs.choices.values():
        cmd.add_argument("--config", help="a TOML settings file")


def instant(text: str) -> datetime:
    try:
        return as_utc(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def audit_command(args: argparse.Namespace, settings: Settings) -> int:
    """``signoff audit ...``: its exit status."""
    if args.verb != "export" or not args.output:
        return asyncio.run(run_audit(args, settings))
    try:
        with open(args.output, "w", newline="", encoding="utf-8") as out:
            return asyncio.run(run_audit(args, settings, out))
    except OSError as exc:
        raise ConfigError(f"--output: cannot write {args.output}: {exc.strerror}") from None


async def run_audit(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    """Run one ``signoff audit`` verb (to standard output unless ``out``); its exit status."""
    out = out or sys.stdout
    audit = open_audit(settings.audit)  # reads and deletes; writes no row
    try:
        # Not migrated from here: a newer command must not change a server's database.
        revision = await audit.revision()
        if revision != head():
            raise AuditError(
                f"SIGNOFF_AUDIT: the audit database is at revision {revision or 'none'}, "
                f"not {head()}; run `signoff db upgrade` (or start the server) first"
            )
        if args.verb == "export":
            where = AuditFilter(
                statuses=tuple(args.statuses or ()),
                since=args.since,
                until=args.until,
                conversation=args.conversation,
                action=args.action,
                decided_by=args.decided_by,
                site=args.site,
            )
            async for text in csv_chunks(audit.engine, where):
                out.write(text)
            return 0
        if args.verb == "verify":
            keys = [chain_key(s) for s in (settings.secret, *settings.previous_secrets)]
            report = await verify(audit.engine, {key_id(key): key for key in keys})
            for problem in report.problems:
                print(problem, file=out)
            state = "intact" if report.intact else f"{len(report.problems)} broken"
            print(
                f"audit log: {report.rows} rows checked in {report.sites} site(s): {state}",
                file=out,
            )
            return 0 if report.intact else 1
        purged = await purge(
            audit.engine, settings.retention(), datetime.now(UTC), dry_run=args.dry_run
        )
        if not purged:
            print("audit log: no site has a retention set; nothing purged", file=out)
        verb = "would purge" if args.dry_run else "purged"
        retention = settings.retention()
        for site, count in purged.items():
            days = retention(site)
            print(f"site {site}: {verb} {count} rows older than {days} days", file=out)
        return 0
    finally:
        await audit.close()
