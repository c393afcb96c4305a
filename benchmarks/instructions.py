"""Instructions per turn, counted by Valgrind: a figure a busy or drifting machine leaves alone.

On a shared machine the load benchmarks' CPU times move by tens of percent from one run to
the next; the instructions a turn executes do not. This runs ``benchmarks.engine_turns``'s
turns (no sockets) under ``valgrind --tool=callgrind`` twice, with few and with many
counted turns, so that what a process does once (starting, importing, opening sessions)
cancels out, and prints the instructions per turn for each kind of turn and store.
``--against DIR`` counts another version of signoff too (its ``server`` directory, a git
worktree's say) in the same run, side by side, with the ratio.

Under Valgrind a turn runs about fifty times slower: the defaults take a few minutes. A
stream's frames depend on the clock (pieces are gathered by time), so its count under
Valgrind is not the count of a stream at full speed: compare messages and cards.
Needs Valgrind (Debian's ``valgrind``) and, for the Redis rows, Redis.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

from redis import Redis

from benchmarks.engine_turns import REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
# The turns of one process: engine_turns.measure, nothing else.
PROGRAM = (
    "import asyncio, sys\n"
    "from benchmarks.engine_turns import measure\n"
    "asyncio.run(measure(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))\n"
)
COUNTED = re.compile(r"Collected : (\d+)")


def collected(valgrind_output: str) -> int:
    """The instructions callgrind counted, from what it printed at exit."""
    found = COUNTED.search(valgrind_output)
    if found is None:
        raise RuntimeError(f"callgrind printed no count:\n{valgrind_output[-2000:]}")
    return int(found.group(1))


def per_turn(few: int, many: int, extra_turns: int) -> float:
    """Instructions per turn from two runs that differ only in their counted turns."""
    return (many - few) / extra_turns


def count(server: Path, store_url: str, kind: str, sessions: int, turns: int) -> int:
    """The instructions of one process running ``turns`` counted turns per session."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(server), str(ROOT)])}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            PROGRAM,
            store_url,
            kind,
            str(sessions),
            str(turns),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    return collected(done.stderr)


def forget(redis_url: str, prefix: str) -> None:
    """Delete a run's keys."""
    client = Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--kinds", default="message,card", help="message,stream,card")
    parser.add_argument("--stores", default="memory,redis", help="memory,redis")
    parser.add_argument("--sessions", type=int, default=20, help="sessions (20)")
    parser.add_argument("--turns", default="2,10", help="few and many counted turns (2,10)")
    parser.add_argument("--against", type=Path, help="another signoff's server directory")
    parser.add_argument("--redis", dest="redis_url", default=REDIS_URL, help=REDIS_URL)
    options = parser.parse_args()
    few, many = (int(n) for n in options.turns.split(","))
    versions = {"this": ROOT / "server"}
    if options.against:
        versions["against"] = options.against.resolve()
    print(f"{'turn':8} {'store':7} " + " ".join(f"{name:>16}" for name in versions), end="")
    print("  (instructions per turn)" if len(versions) == 1 else "  this ÷ against")
    for kind in options.kinds.split(","):
        for store in options.stores.split(","):
            figures = []
            for server in versions.values():
                counts = []
                for turns in (few, many):
                    prefix = f"bench-instr-{secrets.token_hex(4)}"
                    url = (
                        f"{options.redis_url}?prefix={prefix}" if store == "redis" else "memory://"
                    )
                    try:
                        counts.append(count(server, url, kind, options.sessions, turns))
                    finally:
                        if store == "redis":
                            forget(options.redis_url, prefix)
                figures.append(per_turn(*counts, options.sessions * (many - few)))
            row = f"{kind:8} {store:7} " + " ".join(f"{f:>16,.0f}" for f in figures)
            print(row + (f"  {figures[0] / figures[1]:.2f}" if len(figures) == 2 else ""))


if __name__ == "__main__":
    main()
