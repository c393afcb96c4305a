"""Run signoff under load next to its peers and print one table.

Rows: signoff (memory store, one process), signoff (Redis store, one and two
processes), a bare ``websockets`` echo server (the ceiling) and python-socketio
(a peer). Scenarios, each on a freshly started server:

1. idle: open N sessions, each through its handshake, hold them, read the server's RSS;
2. message: round trips of one message to its answer (signoff: ``message`` → the bot's
   ``message.end``), closed-loop for throughput, then paced for latency at a set load;
3. card (signoff only): ``cancel order 1001`` → ``card`` → ``decision`` confirm →
   ``card.update`` ``done``, paced at C sessions for latency, closed-loop for throughput.

Everything listens on 127.0.0.1 only; every phase is bounded in time and count.
Then the audit log's CSV export next to PostgreSQL's COPY (benchmarks/audit_export.py).

``python -m benchmarks.run --help``; ``make bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(ROOT))

from benchmarks import audit_export  # noqa: E402
from benchmarks.client import worker_main  # noqa: E402
from benchmarks.peers import raise_open_files  # noqa: E402
from benchmarks.servers import HOST, environment, signoff_command, wait_listening  # noqa: E402

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
REDIS_URL = "redis://127.0.0.1:6379/0"
# A store that cannot be opened stops `signoff serve` with a message naming the setting.
STORE_FAILURE_MARKERS = ("SIGNOFF_STORE", "StoreError")
UNAVAILABLE = "n/a (redis store unavailable)"
TIMES = "\N{MULTIPLICATION SIGN}"
RATE_LIMITED_MARK = "*"
# The rows that run the streamed-answer scenario (a bot streaming fifty pieces).
STREAMING_KINDS = {"signoff", "ws-echo"}
# A round-trip phase: what is sent, closed or paced, and the pace (0 when closed).
Step = tuple[str, str, float]
# load: the WebSocket rows and scenarios; audit-export: benchmarks/audit_export.py.
SUITES = ("load", "audit-export")
# The load suite's scenarios, in the order they run.
SCENARIOS = ("idle", "message", "stream", "card")


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    kind: str  # signoff | ws-echo | socketio
    store: str | None = None
    instances: int = 1


def rows(redis_url: str) -> list[Row]:
    return [
        Row("memory", f"signoff memory {TIMES}1", "signoff", "memory://"),
        Row("redis", f"signoff redis {TIMES}1", "signoff", redis_url),
        Row("redis2", f"signoff redis {TIMES}2", "signoff", redis_url, 2),
        Row("ws-echo", "bare websockets echo (ceiling)", "ws-echo"),
        Row("socketio", "python-socketio (peer)", "socketio"),
    ]


@dataclass
class Settings:
    idle: int = 10_000
    msg_sessions: int = 1_000
    msg_rates: tuple[float, ...] = (500.0,)
    card_sessions: int = 1_000
    # One card round trip per session every 20 s (a busy visitor), then every 5 s (stress).
    card_rates: tuple[float, ...] = (50.0, 200.0)
    warmup: float = 2.0
    duration: float = 10.0
    settle: float = 3.0
    workers: int = 2
    open_concurrency: int = 100
    rows: tuple[str, ...] = ("memory", "redis", "redis2", "ws-echo", "socketio")
    redis_url: str = REDIS_URL
    suites: tuple[str, ...] = SUITES
    scenarios: tuple[str, ...] = SCENARIOS
    audit_rows: int = audit_export.ROWS
    postgres: str = audit_export.POSTGRES_URL
    profile: str | None = None
    json: str | None = None
    quiet: bool = False


QUICK = Settings(
    idle=500,
    msg_sessions=300,
    msg_rates=(100.0,),
    card_sessions=100,
    card_rates=(40.0,),
    warmup=1.0,
    duration=3.0,
    settle=1.0,
    audit_rows=audit_export.QUICK_ROWS,
)


class StoreUnavailable(Exception):
    """The server stopped at start-up because it could not open its store."""


# Servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Instance:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    path: str  # where the WebSocket is served

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}{self.path}"


class Servers:
    """The processes of one row, started fresh for one scenario."""

    def __init__(self, row: Row, tag: str, workdir: Path) -> None:
        self.row = row
        self.tag = tag
        self.workdir = workdir
        self.instances: list[Instance] = []

    def command(self, port: int) -> list[str]:
        if self.row.kind == "signoff":
            return signoff_command(port)
        return [sys.executable, "-m", "benchmarks.peers", self.row.kind, "--port", str(port)]

    def environment(self, index: int) -> dict[str, str]:
        if self.row.kind != "signoff":
            return environment()
        assert self.row.store is not None
        return environment(
            secret="bench-" + secrets.token_urlsafe(24),
            store=store_url(self.row.store, self.tag),
            # Every client of the benchmark is 127.0.0.1: the per-address limits would
            # measure themselves, so they are lifted (the per-session ones stay).
            address_message_rate="1000000",
            address_session_rate="1000000",
            # One audit database per process: SQLite is not shared between servers.
            audit=f"sqlite:///{self.workdir / f'{self.tag}-audit-{index}.db'}",
        )

    def start(self) -> None:
        for index in range(self.row.instances):
            port = free_port()
            name = f"{self.tag}-{self.row.kind}-{index}.log"
            log = self.workdir / name
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    self.command(port),
                    cwd=ROOT,
                    env=self.environment(index),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=raise_open_files,
                    start_new_session=True,
                )
            path = "/ws" if self.row.kind == "signoff" else ""
            self.instances.append(Instance(process, port, log, path))
        # Checked in turn: the second's failure is the same as the first's.
        for instance in self.instances:
            wait_started(instance)

    def stop(self) -> None:
        for instance in self.instances:
            if instance.process.poll() is None:
                instance.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for instance in self.instances:
            try:
                instance.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                instance.process.kill()
                instance.process.wait()

    @property
    def urls(self) -> list[str]:
        return [i.url for i in self.instances]

    def rss(self) -> int:
        return sum(rss_bytes(i.process.pid) for i in self.instances)

    def cpu(self) -> float:
        return sum(cpu_seconds(i.process.pid) for i in self.instances)


def store_url(url: str, tag: str) -> str:
    """The row's store, with a key prefix of its own where the URL takes one."""
    if not url.startswith("redis"):
        return url
    return url + ("&" if "?" in url else "?") + f"prefix={tag}"


def wait_started(instance: Instance) -> None:
    def exited(text: str) -> None:
        if any(marker in text for marker in STORE_FAILURE_MARKERS):
            raise StoreUnavailable(text.strip().splitlines()[-1] if text.strip() else "")

    wait_listening(instance.process, instance.port, instance.log, START_TIMEOUT, exited)


@contextlib.contextmanager
def serving(row: Row, tag: str, workdir: Path) -> Iterator[Servers]:
    servers = Servers(row, tag, workdir)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


# Client processes ---------------------------------------------------------------------


class Clients:
    """The load-generating processes, each holding a share of the sessions."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs,), daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)

    def call(self, commands: Sequence[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        """Send one command to each process and wait for every reply."""
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        replies = []
        deadline = time.monotonic() + timeout
        for pipe in self.pipes:
            if not pipe.poll(max(deadline - time.monotonic(), 0.0)):
                raise RuntimeError(f"a client process did not answer within {timeout:.0f}s")
            reply = pipe.recv()
            if not reply.get("ok"):
                raise RuntimeError("a client process failed:\n" + reply.get("error", "?"))
            replies.append(reply)
        return replies

    def open(self, kind: str, urls: list[str], total: int, concurrency: int) -> dict[str, Any]:
        shares = split(total, len(self.pipes))
        firsts = [sum(shares[:i]) for i in range(len(shares))]
        replies = self.call(
            [
                {
                    "cmd": "open",
                    "kind": kind,
                    "urls": urls,
                    "count": share,
                    "first": first,
                    "concurrency": concurrency,
                }
                for share, first in zip(shares, firsts, strict=True)
            ],
            timeout=300.0 + total / 50,
        )
        errors: Counter[str] = Counter()
        for reply in replies:
            errors.update(reply["errors"])
        return {
            "opened": sum(r["opened"] for r in replies),
            "errors": dict(errors),
            "seconds": max(r["seconds"] for r in replies),
            "counts": [r["opened"] for r in replies],
        }

    def run(
        self, op: str, mode: str, rate: float, counts: list[int], warmup: float, duration: float
    ) -> list[dict[str, Any]]:
        total = max(sum(counts), 1)
        start_at = time.monotonic() + 0.5  # CLOCK_MONOTONIC is the same in every process
        return self.call(
            [
                {
                    "cmd": "run",
                    "op": op,
                    "mode": mode,
                    "rate": rate * count / total,
                    "start_at": start_at,
                    "warmup": warmup,
                    "duration": duration,
                }
                for count in counts
            ],
            timeout=warmup + duration + 120.0,
        )

    def close_sessions(self) -> None:
        self.call([{"cmd": "close"}] * len(self.pipes), timeout=120.0)

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send({"cmd": "exit"})
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# Measuring ----------------------------------------------------------------------------


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(math.ceil(fraction * len(sorted_values)), 1)
    return sorted_values[rank - 1]


@dataclass
class Phase:
    op: str
    mode: str
    sessions: int
    offered: float | None
    round_trips: int
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    late: int
    rate_limited: int
    errors: dict[str, int]
    server_cpu: float  # cores busy, summed over instances
    server_cpu_per_rt_us: float  # server CPU time per round trip: holds under a busy machine
    load_average: float  # the machine's 1-minute load when the phase began
    client_cpu: list[float]  # each client process, cores busy


@dataclass
class Result:
    row: Row
    unavailable: str | None = None
    idle_requested: int = 0
    idle_held: int = 0
    idle_open_seconds: float = 0.0
    idle_errors: dict[str, int] = field(default_factory=dict)
    rss_base: int = 0
    rss_idle: int = 0
    phases: list[Phase] = field(default_factory=list)

    def phase(self, op: str, mode: str, offered: float | None = None) -> Phase | None:
        return next(
            (
                p
                for p in self.phases
                if p.op == op and p.mode == mode and (offered is None or p.offered == offered)
            ),
            None,
        )


class Bench:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.run_id = f"signoff-bench-{os.getpid()}-{secrets.token_hex(3)}"
        self.clients = Clients(settings.workers)
        self.used_redis = False

    def say(self, text: str) -> None:
        if not self.settings.quiet:
            print(text, file=sys.stderr, flush=True)

    def steps(self, row: Row) -> list[Step]:
        """The round-trip phases ``row`` runs, in the order every row runs them."""
        s = self.settings
        steps: list[Step] = [("message", "closed", 0.0)]
        steps += [("message", "paced", rate) for rate in s.msg_rates]
        if row.kind in STREAMING_KINDS:
            steps.append(("stream", "closed", 0.0))
        if row.kind == "signoff":
            steps.append(("card", "closed", 0.0))
            steps += [("card", "paced", rate) for rate in s.card_rates]
        return [step for step in steps if step[0] in s.scenarios]

    def attempt(self, result: Result, measure: Callable[[], None]) -> None:
        """One phase of a row, unless its store was found unavailable."""
        if result.unavailable:
            return
        try:
            measure()
        except StoreUnavailable as exc:
            self.say(f"  {result.row.label}: {exc}")
            result.unavailable = UNAVAILABLE

    def serving(self, row: Row, scenario: str) -> contextlib.AbstractContextManager[Servers]:
        if row.store and row.store.startswith("redis"):
            self.used_redis = True
        return serving(row, f"{self.run_id}-{row.key}-{scenario}", self.workdir)

    def idle(self, row: Row, result: Result) -> None:
        s = self.settings
        with self.serving(row, "idle") as servers:
            result.rss_base = servers.rss()
            self.say(f"  {row.label}: opening {s.idle} idle sessions")
            opened = self.clients.open(row.kind, servers.urls, s.idle, s.open_concurrency)
            time.sleep(s.settle)
            result.rss_idle = servers.rss()
            result.idle_requested = s.idle
            result.idle_held = opened["opened"]
            result.idle_open_seconds = opened["seconds"]
            result.idle_errors = opened["errors"]
            self.clients.close_sessions()

    def round_trips(self, row: Row, result: Result, op: str, mode: str, rate: float) -> None:
        """One phase on a fresh server with fresh sessions: no phase inherits another's
        state (conversations grow by a turn with every round trip)."""
        s = self.settings
        sessions = s.card_sessions if op == "card" else s.msg_sessions
        with self.serving(row, f"{op}-{mode}-{rate:g}") as servers:
            opened = self.clients.open(row.kind, servers.urls, sessions, s.open_concurrency)
            pace = f" at {rate:g}/s" if mode == "paced" else ""
            self.say(f"  {row.label}: {op}, {mode}{pace}, {opened['opened']:,} sessions")
            try:
                phase = self.phase(servers, row, op, mode, rate, opened["counts"])
            finally:
                self.clients.close_sessions()
        phase.errors.update({f"opening: {e}": n for e, n in opened["errors"].items()})
        result.phases.append(phase)

    def phase(
        self, servers: Servers, row: Row, op: str, mode: str, rate: float, counts: list[int]
    ) -> Phase:
        s = self.settings
        load = os.getloadavg()[0]
        with self.profiling(servers, row, op, mode, rate):
            cpu, began = servers.cpu(), time.monotonic()
            replies = self.clients.run(op, mode, rate, counts, s.warmup, s.duration)
            cpu = servers.cpu() - cpu
            server_cpu = cpu / (time.monotonic() - began)
        completed = sum(r["completed"] for r in replies)
        latencies = sorted(x for r in replies for x in r["latencies"])
        errors: Counter[str] = Counter()
        for reply in replies:
            errors.update(reply["errors"])
        return Phase(
            op=op,
            mode=mode,
            sessions=sum(counts),
            offered=rate if mode == "paced" else None,
            round_trips=len(latencies),
            per_second=len(latencies) / s.duration,
            p50_ms=percentile(latencies, 0.50) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            max_ms=(latencies[-1] * 1000) if latencies else math.nan,
            late=sum(r["late"] for r in replies),
            rate_limited=sum(r["rate_limited"] for r in replies),
            errors=dict(errors),
            server_cpu=server_cpu,
            server_cpu_per_rt_us=cpu / completed * 1e6 if completed else math.nan,
            load_average=load,
            client_cpu=[r["cpu"] / r["wall"] for r in replies],
        )

    @contextlib.contextmanager
    def profiling(
        self, servers: Servers, row: Row, op: str, mode: str, rate: float
    ) -> Iterator[None]:
        """With --profile: py-spy samples each server process through the phase."""
        if not self.settings.profile or row.kind != "signoff":
            yield
            return
        out = Path(self.settings.profile)
        out.mkdir(parents=True, exist_ok=True)
        spies = [
            subprocess.Popen(
                [
                    py_spy() or "py-spy",
                    "record",
                    "--pid",
                    str(i.process.pid),
                    "--rate",
                    "200",
                    # Folded stacks: flamegraph.pl and speedscope.app both read them.
                    "--format",
                    "raw",
                    "--output",
                    str(out / f"{row.key}-{op}-{mode}-{rate:g}-{n}.folded"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for n, i in enumerate(servers.instances)
        ]
        try:
            yield
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)

    def close(self) -> None:
        self.clients.stop()
        if self.used_redis:
            delete_redis_keys(self.settings.redis_url, self.run_id)


def py_spy() -> str | None:
    """py-spy on the PATH or beside this Python (an unactivated venv)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def delete_redis_keys(url: str, prefix: str) -> None:
    """Remove what this run left in Redis; best effort, with the redis client if installed."""
    try:
        import redis
    except ImportError:
        return
    try:
        client = redis.Redis.from_url(url.split("?", 1)[0])
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    except Exception as exc:
        print(f"could not remove this run's Redis keys ({prefix}*): {exc}", file=sys.stderr)


def run_bench(settings: Settings) -> list[Result]:
    """Every selected row; the servers and clients are stopped at the end."""
    raise_open_files()
    chosen = [r for r in rows(settings.redis_url) if r.key in settings.rows]
    with tempfile.TemporaryDirectory(prefix="signoff-bench-") as tmp:
        bench = Bench(settings, Path(tmp))
        try:
            results = [Result(row) for row in chosen]
            if "idle" in settings.scenarios:
                for result in results:
                    bench.attempt(result, functools.partial(bench.idle, result.row, result))
            # Scenario by scenario, every row in turn: this machine's speed drifts by tens
            # of percent over minutes, and the rows of one scenario are compared.
            order = [step for result in results for step in bench.steps(result.row)]
            for step in dict.fromkeys(order):
                for result in results:
                    if step in bench.steps(result.row):
                        measure = functools.partial(bench.round_trips, result.row, result, *step)
                        bench.attempt(result, measure)
            return results
        finally:
            bench.close()


# Reporting ----------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.1f}"


def _mib(value: int) -> str:
    return f"{value / 2**20:.0f}"


def table(results: list[Result], settings: Settings) -> str:
    s = settings
    header = [
        "server",
        "idle sessions held",
        "RSS at idle (MiB)",
        "msg rt/s",
        *[f"msg p50 / p99 ms @ {r:g}/s" for r in s.msg_rates],
        "stream rt/s",
        "card rt/s",
        *[f"card p50 / p99 ms @ {r:g}/s" for r in s.card_rates],
    ]
    lines = [header]
    for result in results:
        if result.unavailable:
            lines.append([result.row.label, result.unavailable, *[""] * (len(header) - 2)])
            continue
        cells = [
            result.row.label,
            f"{result.idle_held:,} / {result.idle_requested:,}",
            _mib(result.rss_idle),
        ]
        for op, rates in (("message", s.msg_rates), ("stream", ()), ("card", s.card_rates)):
            closed = result.phase(op, "closed")
            mark = RATE_LIMITED_MARK if closed and closed.rate_limited else ""
            cells.append("—" if closed is None else f"{closed.per_second:,.0f}{mark}")
            for rate in rates:
                paced = result.phase(op, "paced", rate)
                cells.append("—" if paced is None else f"{_ms(paced.p50_ms)} / {_ms(paced.p99_ms)}")
        lines.append(cells)
    text = markdown(lines)
    if any(p.rate_limited for r in results for p in r.phases if p.mode == "closed"):
        text += (
            f"\n{RATE_LIMITED_MARK} held back by signoff's per-connection rate limit "
            "(5 frames/s after a burst of 20): more sessions would measure the server"
        )
    return text


def details(results: list[Result]) -> str:
    header = [
        "server",
        "scenario",
        "sessions",
        "offered/s",
        "rt/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU",
        "server µs/rt",
        "client CPU",
        "load",
        "errors",
    ]
    lines = [header]
    for result in results:
        if result.unavailable:
            continue
        per_session = (result.rss_idle - result.rss_base) / max(result.idle_held, 1)
        lines.append(
            [
                result.row.label,
                "idle",
                f"{result.idle_held:,}",
                "",
                f"opened in {result.idle_open_seconds:.1f}s",
                "",
                "",
                "",
                f"{_mib(result.rss_base)} MiB empty",
                f"{per_session / 1024:.1f} KiB/session",
                "",
                "",
                _errors(result.idle_errors),
            ]
        )
        for p in result.phases:
            lines.append(
                [
                    result.row.label,
                    f"{p.op}, {p.mode}",
                    f"{p.sessions:,}",
                    "" if p.offered is None else f"{p.offered:g}",
                    f"{p.per_second:,.0f}",
                    _ms(p.p50_ms),
                    _ms(p.p99_ms),
                    _ms(p.max_ms),
                    f"{p.server_cpu:.0%}",
                    f"{p.server_cpu_per_rt_us:,.0f}",
                    " + ".join(f"{c:.0%}" for c in p.client_cpu),
                    f"{p.load_average:.1f}",
                    _errors(p.errors)
                    + (f"; {p.rate_limited} rate-limited" if p.rate_limited else "")
                    + (f"; {p.late} late" if p.late else ""),
                ]
            )
    return markdown(lines)


def _errors(errors: dict[str, int]) -> str:
    return "; ".join(f"{n}{TIMES} {e}" for e, n in errors.items()) or "0"


def markdown(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def summary(settings: Settings) -> str:
    s = settings
    return (
        f"idle: {s.idle:,} sessions; message: {s.msg_sessions:,} sessions, rt/s closed-loop, "
        f"latency paced at {_rates(s.msg_rates)}; card: {s.card_sessions:,} sessions, rt/s "
        f"closed-loop, latency paced at {_rates(s.card_rates)}; each phase {s.warmup:g}s warm-up + "
        f"{s.duration:g}s measured; {s.workers} client processes; {os.cpu_count()} cores"
    )


def _rates(rates: tuple[float, ...]) -> str:
    return " and ".join(f"{r:g}/s" for r in rates)


# Command line -------------------------------------------------------------------------


def _rate_list(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


def parse(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a small run of a few seconds each")
    parser.add_argument("--idle", type=int, help="idle sessions to open (10000)")
    parser.add_argument("--msg-sessions", type=int, help="sessions for message round trips (1000)")
    parser.add_argument(
        "--msg-rate", type=_rate_list, help="offered message round trips/s, comma-separated (500)"
    )
    parser.add_argument("--card-sessions", type=int, help="sessions for card round trips (1000)")
    parser.add_argument(
        "--card-rate", type=_rate_list, help="offered card round trips/s, comma-separated (50,200)"
    )
    parser.add_argument("--warmup", type=float, help="seconds of each phase not measured (2)")
    parser.add_argument("--duration", type=float, help="seconds measured per phase (10)")
    parser.add_argument("--workers", type=int, help="client processes (2)")
    parser.add_argument(
        "--rows",
        help="comma-separated rows: memory,redis,redis2,ws-echo,socketio (all)",
    )
    parser.add_argument("--redis", dest="redis_url", help=f"Redis store URL ({REDIS_URL})")
    parser.add_argument("--suite", help=f"comma-separated: {','.join(SUITES)} (both)")
    parser.add_argument(
        "--scenarios", help=f"the load suite's, comma-separated: {','.join(SCENARIOS)} (all)"
    )
    parser.add_argument(
        "--audit-rows",
        type=int,
        help=f"audit rows to seed and export as CSV ({audit_export.ROWS:,})",
    )
    parser.add_argument(
        "--postgres",
        help=f"PostgreSQL admin URL for the audit export ({audit_export.POSTGRES_URL})",
    )
    parser.add_argument("--profile", metavar="DIR", help="py-spy each signoff server into DIR")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    settings = replace(QUICK) if args.quick else Settings()
    for name in ("idle", "msg_sessions", "card_sessions"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if args.msg_rate is not None:
        settings.msg_rates = args.msg_rate
    if args.card_rate is not None:
        settings.card_rates = args.card_rate
    for name in (
        "warmup",
        "duration",
        "workers",
        "redis_url",
        "profile",
        "json",
        "audit_rows",
        "postgres",
    ):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if args.rows:
        known = {r.key for r in rows(settings.redis_url)}
        chosen = tuple(r.strip() for r in args.rows.split(","))
        unknown = set(chosen) - known
        if unknown:
            parser.error(f"--rows: unknown {sorted(unknown)}; choose from {sorted(known)}")
        settings.rows = chosen
    if args.suite:
        suites = tuple(s.strip() for s in args.suite.split(","))
        if set(suites) - set(SUITES):
            parser.error(f"--suite: choose from {','.join(SUITES)}")
        settings.suites = suites
    if args.scenarios:
        scenarios = tuple(s.strip() for s in args.scenarios.split(","))
        if set(scenarios) - set(SCENARIOS):
            parser.error(f"--scenarios: choose from {','.join(SCENARIOS)}")
        settings.scenarios = scenarios
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    if settings.profile and py_spy() is None:
        print("--profile needs py-spy: pip install py-spy", file=sys.stderr)
        return 2
    if "socketio" in settings.rows and "load" in settings.suites:
        try:
            import socketio  # noqa: F401
        except ImportError:
            print("python-socketio is missing: pip install -e '.[bench]'", file=sys.stderr)
            return 2
    figures: dict[str, Any] = {"settings": asdict(settings)}
    if "load" in settings.suites:
        results = run_bench(settings)
        print(summary(settings))
        print()
        print(table(results, settings))
        print()
        print(details(results))
        figures["results"] = [asdict(r) for r in results]
    if "audit-export" in settings.suites:
        report = audit_export.run_export(
            audit_export.Settings(
                rows=settings.audit_rows, postgres=settings.postgres, quiet=settings.quiet
            )
        )
        if "load" in settings.suites:
            print()
        print(audit_export.summary(report))
        print()
        print(audit_export.table(report))
        figures["audit_export"] = audit_export.as_json(report)
    if settings.json:
        Path(settings.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
