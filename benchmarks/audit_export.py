"""Export the audit log as CSV through signoff's API, next to PostgreSQL's own COPY.

One run: a scratch PostgreSQL database is created and brought to the newest schema
(``signoff db upgrade``), N audit rows are written into it by one ``INSERT ... SELECT``
over ``generate_series``, and then, on the same table:

1. **signoff**: ``signoff serve`` is started as its own process and the rows are read
   with ``GET /api/v1/audit?format=csv`` (the bootstrap admin key), streamed with httpx
   and counted as they arrive, never kept;
2. **COPY** (the floor): ``COPY (SELECT <the CSV's columns> FROM audit_events ORDER BY id)
   TO STDOUT WITH CSV HEADER`` through asyncpg into a sink that counts the same way.

While each export runs, a thread reads the resident memory (``VmRSS``) of the process
doing the export every 50 ms: the signoff server, or the PostgreSQL backend running the
COPY. The database is dropped and the server stopped at the end, whatever happens.

``python -m benchmarks.audit_export --help``; ``make bench`` runs it after the load
benchmarks (``python -m benchmarks.run``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: python benchmarks/audit_export.py
    sys.path.insert(0, str(ROOT))

from benchmarks.servers import HOST, environment, signoff_command, wait_listening  # noqa: E402
from signoff.audit.query import CSV_COLUMNS, DOCUMENTS  # noqa: E402

POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROWS = 1_000_000
QUICK_ROWS = 100_000
# --check parses every record with the csv module, in memory: small runs only.
CHECK_LIMIT = 50_000
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
UNAVAILABLE = "n/a (PostgreSQL unavailable)"

# The rows: three sites, each a hash chain of its own (seq 1, 2, 3...); a conversation
# of 4 rows, a session of 12; the decider, statuses and actions varying as they do in
# a shop's log; params of about 140 bytes of JSON; a result, a response summary or an
# error where the status has one. The hashes are plausible (hex SHA-256), not a chain
# that verifies: the export does not check it. No value holds a line break, so the
# lines of an export are its records.
SEED = """
INSERT INTO audit_events (
    ts, site, session_id, conversation_id, user_id, card_id, action, kind, status,
    params, result, error, decided_by, duration_ms, level, ip, user_agent, response,
    seq, prev_hash, row_hash, key_id)
SELECT
    timestamptz '2026-01-01 00:00:00+00' + g * interval '2.5 seconds'
        + (g % 997) * interval '1 microsecond',
    s.site,
    's_' || substr(md5('s' || g / 12), 1, 22),
    'c_' || substr(md5('c' || g / 4), 1, 22),
    'customer-' || g * 7919 % 50000,
    CASE WHEN a.kind <> 'read' THEN 'card_' || substr(md5('k' || g), 1, 20) END,
    a.action,
    a.kind,
    st.status,
    jsonb_build_object(
        'order_id', 100000 + g % 900000,
        'reason', (ARRAY['damaged in transit', 'ordered twice', 'changed my mind',
                         'wrong size, "L" not "M"'])[1 + g % 4],
        'amount', round(g % 50000 / 100.0, 2),
        'currency', (ARRAY['EUR', 'USD', 'GBP'])[1 + g % 3],
        'note', 'asked in chat, see conversation ' || g / 4),
    CASE WHEN st.status = 'success' THEN jsonb_build_object(
        'ok', true, 'refund_id', 're_' || substr(md5('r' || g), 1, 14), 'state', 'queued') END,
    CASE WHEN st.status = 'failed'
        THEN 'payment provider said: card_declined (code 402), retry later' END,
    CASE g % 5 WHEN 0 THEN 'auto' WHEN 1 THEN 'user:customer-' || g * 7919 % 50000
        WHEN 2 THEN NULL ELSE 'teammate:' || (ARRAY['ana', 'bo', 'chen', 'dara'])[1 + g % 4] END,
    round(g * 104729 % 400000 / 1000.0, 3)::float8,
    CASE WHEN g % 5 IN (3, 4) THEN 1 + g % 2 END,
    '10.' || g % 250 || '.' || g / 250 % 250 || '.' || g % 199 + 1,
    (ARRAY['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) '
           'Chrome/128.0 Safari/537.36',
           'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 '
           '(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
           'Slackbot 1.0 (+https://api.slack.com/robots)'])[1 + g % 3],
    CASE WHEN a.kind <> 'read' AND st.status IN ('success', 'failed') THEN jsonb_build_object(
        'status', CASE st.status WHEN 'success' THEN 200 ELSE 402 END,
        'body', '{"id":"' || substr(md5('b' || g), 1, 12) || '"}') END,
    g / 3 + 1,
    encode(sha256(('p' || g)::bytea), 'hex'),
    encode(sha256(('h' || g)::bytea), 'hex'),
    'k_3f9a2c71'
FROM generate_series(0::bigint, $1::bigint - 1) AS g
CROSS JOIN LATERAL (SELECT (ARRAY['bench', 'shop-eu', 'shop-us'])[1 + g % 3] AS site) s
CROSS JOIN LATERAL (
    SELECT (ARRAY['cancel_order', 'refund_payment', 'get_order', 'update_address',
                  'issue_voucher'])[1 + g / 3 % 5] AS action,
           (ARRAY['destructive', 'destructive', 'read', 'write', 'write'])[1 + g / 3 % 5] AS kind
) a
CROSS JOIN LATERAL (
    SELECT (ARRAY['success', 'success', 'success', 'success', 'success', 'success', 'failed',
                  'cancelled', 'rejected', 'expired', 'pending_confirmation',
                  'refused'])[1 + g * 31 % 12] AS status
) st
"""
# Each site's chain end, as the audit log keeps it.
SEED_CHAINS = """
INSERT INTO audit_chains (site, seq, row_hash, purged_seq, purged_hash)
SELECT DISTINCT ON (site) site, seq, row_hash, 0, repeat('0', 64)
FROM audit_events ORDER BY site, seq DESC
"""
COPY_QUERY = (
    "SELECT "
    + ", ".join(f"{name}::text" if name in DOCUMENTS else name for name in CSV_COLUMNS)
    + " FROM audit_events ORDER BY id"
)


@dataclass
class Settings:
    rows: int = ROWS
    postgres: str = POSTGRES_URL  # an admin URL: the scratch database is made through it
    interval: float = 0.05  # between RSS samples, seconds
    settle: float = 1.0  # after an export, before its "after" RSS
    timeout: float = 900.0  # for each export
    check: bool = False  # parse every record with the csv module (CHECK_LIMIT rows at most)
    json: str | None = None
    quiet: bool = False


@dataclass
class Export:
    label: str
    records: int = 0  # CSV records after the header (lines: no value holds a line break)
    header: str = ""
    seconds: float = 0.0
    bytes: int = 0
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    anon_before: int = 0  # RssAnon: the process's own memory, without shared pages
    anon_peak: int = 0
    server_cpu: float | None = None  # the signoff process, seconds; None for COPY
    database_cpu: float = 0.0  # the PostgreSQL backends serving the export, seconds
    client_cpu: float = 0.0  # this process, reading and counting
    parsed: list[list[str]] | None = None  # with --check: every record, parsed

    @property
    def rows_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_row_us(self) -> float:
        spent = (self.server_cpu or 0.0) + self.database_cpu
        return spent / self.records * 1e6 if self.records else 0.0


@dataclass
class Report:
    rows: int
    unavailable: str | None = None
    database: str = ""  # the scratch database's name (dropped by now)
    seed_seconds: float = 0.0
    table_bytes: int = 0
    load_average: float = 0.0
    exports: list[Export] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.unavailable is None and all(
            e.records == self.rows and e.header == ",".join(CSV_COLUMNS) for e in self.exports
        )


class PostgresUnavailable(Exception):
    """The admin URL could not be reached, or may not create databases."""


# Measuring -----------------------------------------------------------------------------


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of a process, in bytes; zeros once it has gone."""
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return rss, anon


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MemorySampler:
    """A thread reading one process's memory every ``interval`` seconds, keeping the peak."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.before = memory(pid)
        self.peak_rss, self.peak_anon = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        rss, anon = memory(self.pid)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_anon = max(self.peak_anon, anon)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class Counter:
    """Counts an export's lines and bytes as pieces arrive; keeps only the header (and,
    when checking, the whole text, to parse at the end)."""

    def __init__(self, keep: bool) -> None:
        self.lines = 0
        self.bytes = 0
        self.head = b""
        self.kept: list[bytes] | None = [] if keep else None

    def feed(self, piece: bytes) -> None:
        self.lines += piece.count(b"\n")
        self.bytes += len(piece)
        if b"\n" not in self.head and len(self.head) < 4096:
            self.head += piece[:4096]
        if self.kept is not None:
            self.kept.append(piece)

    def into(self, export: Export) -> None:
        export.records = max(self.lines - 1, 0)
        export.bytes = self.bytes
        export.header = self.head.split(b"\n", 1)[0].decode(errors="replace").rstrip("\r")
        if self.kept is not None:
            text = b"".join(self.kept).decode()
            export.parsed = list(csv.reader(io.StringIO(text, newline="")))


# The database ------------------------------------------------------------------------


def database_url(admin: str, name: str) -> str:
    base, _, rest = admin.partition("://")
    authority = rest.split("/", 1)[0]
    query = rest.split("?", 1)[1] if "?" in rest else ""
    return f"{base}://{authority}/{name}" + (f"?{query}" if query else "")


async def connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise PostgresUnavailable(f"{UNAVAILABLE}: {exc}") from exc


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str) -> AsyncIterator[str]:
    """A new database of this run's own, dropped at the end whatever happened."""
    name = f"signoff_bench_{secrets.token_hex(5)}"
    admin = await connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.PostgresError as exc:
        raise PostgresUnavailable(f"{UNAVAILABLE}: {exc}") from exc
    finally:
        await admin.close()
    try:
        yield database_url(admin_url, name)
    finally:
        admin = await connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def upgrade(url: str) -> None:
    """``signoff db upgrade``, as an operator would make the schema."""
    done = subprocess.run(
        [sys.executable, "-m", "signoff.cli", "db", "upgrade"],
        env=environment(audit=url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"signoff db upgrade failed:\n{done.stdout}{done.stderr}")


async def seed(url: str, rows: int) -> int:
    """Write the rows and vacuum them (so neither export sets hint bits on its first
    read); returns the table's size on disk, indexes and TOAST included."""
    conn = await connect(url)
    try:
        await conn.execute(SEED, rows, timeout=1800)
        await conn.execute(SEED_CHAINS)
        await conn.execute("VACUUM (ANALYZE) audit_events", timeout=600)
        size = await conn.fetchval("SELECT pg_total_relation_size('audit_events')")
        return int(size)
    finally:
        await conn.close()


async def backend_cpu(conn: asyncpg.Connection, exclude: Sequence[int] = ()) -> dict[int, float]:
    """CPU seconds of each backend connected to this database but ``conn``'s own."""
    pids = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    return {r["pid"]: cpu_seconds(r["pid"]) for r in pids if r["pid"] not in exclude}


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the backends used between two readings; a new backend counts from zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# signoff ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    key: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@contextlib.contextmanager
def signoff_server(database: str, workdir: Path) -> Iterator[Server]:
    """``signoff serve`` on a free port over the database, stopped at the end."""
    port = free_port()
    key = "bench-admin-" + secrets.token_urlsafe(32)
    log = workdir / "signoff.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            signoff_command(port),
            cwd=ROOT,
            env=environment(
                secret="bench-" + secrets.token_urlsafe(32),
                audit=database,
                admin_key=key,
                store="memory://",
            ),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, port, key, log)
    try:
        wait_listening(server.process, server.port, server.log, START_TIMEOUT)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def export_signoff(server: Server, database: str, settings: Settings) -> Export:
    export = Export("signoff GET /api/v1/audit?format=csv")
    counter = Counter(keep=settings.check)
    monitor = await connect(database)
    try:
        cpu, database_cpu = cpu_seconds(server.process.pid), await backend_cpu(monitor)
        client = time.process_time()
        timeout = httpx.Timeout(60.0, connect=10.0)
        with MemorySampler(server.process.pid, settings.interval) as sampler:
            began = time.perf_counter()
            async with (
                httpx.AsyncClient(base_url=server.url, timeout=timeout) as http,
                http.stream(
                    "GET",
                    "/api/v1/audit",
                    params={"format": "csv"},
                    headers={"Authorization": f"Bearer {server.key}"},
                ) as response,
            ):
                if response.status_code != 200:
                    body = (await response.aread())[:500].decode(errors="replace")
                    raise RuntimeError(f"the export answered {response.status_code}: {body}")
                async for piece in response.aiter_bytes():
                    counter.feed(piece)
            export.seconds = time.perf_counter() - began
        export.client_cpu = time.process_time() - client
        export.server_cpu = cpu_seconds(server.process.pid) - cpu
        export.database_cpu = cpu_spent(database_cpu, await backend_cpu(monitor))
        await asyncio.sleep(settings.settle)
        export.rss_after = memory(server.process.pid)[0]
    finally:
        await monitor.close()
    keep_memory(export, sampler)
    counter.into(export)
    return export


# COPY ---------------------------------------------------------------------------------


async def export_copy(database: str, settings: Settings) -> Export:
    export = Export("PostgreSQL COPY ... TO STDOUT (floor)")
    counter = Counter(keep=settings.check)
    conn = await connect(database)
    try:
        backend = conn.get_server_pid()

        async def sink(piece: bytes) -> None:
            counter.feed(piece)

        cpu, client = cpu_seconds(backend), time.process_time()
        with MemorySampler(backend, settings.interval) as sampler:
            began = time.perf_counter()
            await conn.copy_from_query(
                COPY_QUERY, output=sink, format="csv", header=True, timeout=settings.timeout
            )
            export.seconds = time.perf_counter() - began
        export.client_cpu = time.process_time() - client
        export.database_cpu = cpu_seconds(backend) - cpu
        await asyncio.sleep(settings.settle)
        export.rss_after = memory(backend)[0]
    finally:
        await conn.close()
    keep_memory(export, sampler)
    counter.into(export)
    return export


def keep_memory(export: Export, sampler: MemorySampler) -> None:
    export.rss_before, export.anon_before = sampler.before
    export.rss_peak, export.anon_peak = sampler.peak_rss, sampler.peak_anon


# The run ------------------------------------------------------------------------------


def say(settings: Settings, text: str) -> None:
    if not settings.quiet:
        print(text, file=sys.stderr, flush=True)


async def measure(settings: Settings, workdir: Path) -> Report:
    if settings.check and settings.rows > CHECK_LIMIT:
        raise ValueError(f"--check keeps every record: {CHECK_LIMIT:,} rows at most")
    report = Report(settings.rows)
    async with scratch_database(settings.postgres) as database:
        report.database = database.rsplit("/", 1)[1].split("?", 1)[0]
        say(settings, f"audit export: seeding {settings.rows:,} rows")
        began = time.perf_counter()
        await asyncio.to_thread(upgrade, database)
        report.table_bytes = await seed(database, settings.rows)
        report.seed_seconds = time.perf_counter() - began
        report.load_average = os.getloadavg()[0]
        say(settings, "audit export: signoff")
        with signoff_server(database, workdir) as server:
            report.exports.append(
                await asyncio.wait_for(export_signoff(server, database, settings), settings.timeout)
            )
        say(settings, "audit export: COPY")
        report.exports.append(
            await asyncio.wait_for(export_copy(database, settings), settings.timeout)
        )
    return report


def run_export(settings: Settings, workdir: Path | None = None) -> Report:
    """The whole run; a PostgreSQL that cannot be reached gives a report saying so."""
    try:
        with tempfile.TemporaryDirectory(prefix="signoff-export-") as tmp:
            return asyncio.run(measure(settings, workdir or Path(tmp)))
    except PostgresUnavailable as exc:
        say(settings, f"audit export: {exc}")
        return Report(settings.rows, unavailable=UNAVAILABLE)


# Reporting ----------------------------------------------------------------------------


def _mib(value: int) -> str:
    return f"{value / 2**20:,.0f}"


def table(report: Report) -> str:
    from benchmarks.run import markdown

    header = [
        "export",
        "rows",
        "seconds",
        "rows/s",
        "MB",
        "MB/s",
        "RSS before / peak / after (MiB)",
        "peak growth (MiB)",
        "anon growth (MiB)",
        "CPU s: server + database",
        "CPU µs/row",
    ]
    if report.unavailable:
        return markdown([header, ["audit export", report.unavailable, *[""] * 9]])
    lines = [header]
    for e in report.exports:
        server = "—" if e.server_cpu is None else f"{e.server_cpu:.1f}"
        lines.append(
            [
                e.label,
                f"{e.records:,}",
                f"{e.seconds:.2f}",
                f"{e.rows_per_second:,.0f}",
                f"{e.bytes / 1e6:,.0f}",
                f"{e.bytes / 1e6 / e.seconds:,.0f}" if e.seconds else "—",
                f"{_mib(e.rss_before)} / {_mib(e.rss_peak)} / {_mib(e.rss_after)}",
                _mib(e.rss_peak - e.rss_before),
                _mib(e.anon_peak - e.anon_before),
                f"{server} + {e.database_cpu:.1f}",
                f"{e.cpu_per_row_us:.1f}",
            ]
        )
    return markdown(lines)


def summary(report: Report) -> str:
    if report.unavailable:
        return f"audit export of {report.rows:,} rows: {report.unavailable}"
    counts = "every export has every row" if report.complete else "ROW COUNTS DIFFER"
    return (
        f"audit export: {report.rows:,} rows ({report.table_bytes / 2**20:,.0f} MiB on disk with "
        f"indexes), seeded in {report.seed_seconds:.0f}s; {counts}; load {report.load_average:.1f} "
        f"at the start; {os.cpu_count()} cores. RSS: the signoff process, and for COPY the "
        "PostgreSQL backend (its VmRSS counts the shared buffers it touches; anon does not)."
    )


def as_json(report: Report) -> dict[str, Any]:
    data = asdict(report)
    for export in data["exports"]:
        export.pop("parsed", None)
    return data


# Command line -------------------------------------------------------------------------


def _count(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("at least one row")
    return value


def parse(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.audit_export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rows", type=_count, help=f"rows to seed and export ({ROWS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows")
    parser.add_argument(
        "--postgres", help=f"admin URL, allowed to create databases ({POSTGRES_URL})"
    )
    parser.add_argument(
        "--check", action="store_true", help=f"parse every record ({CHECK_LIMIT:,} rows at most)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    settings = Settings(rows=QUICK_ROWS if args.quick else ROWS, check=args.check, json=args.json)
    if args.rows is not None:
        settings.rows = args.rows
    if args.postgres:
        settings.postgres = args.postgres
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    report = run_export(settings)
    print(summary(report))
    print()
    print(table(report))
    if settings.json:
        Path(settings.json).write_text(json.dumps(as_json(report), indent=2))
    return 0 if report.complete else 1


if __name__ == "__main__":
    sys.exit(main())
