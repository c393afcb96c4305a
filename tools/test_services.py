"""Run a command (the test suite) with Redis and PostgreSQL to test against: the ones the
tests name (TEST_REDIS_URL, TEST_POSTGRES_URL, by default on 127.0.0.1's usual
ports) if they answer, else throwaway servers of this run's own, in a temporary directory
on free ports, stopped when the command ends. What `make test` runs pytest under, so the
README's second command works on a fresh Debian machine.

Run: .venv/bin/python tools/test_services.py -- .venv/bin/python -m pytest
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
START_WITHIN = 30.0  # seconds a throwaway server has to answer


def answers(url: str) -> bool:
    """Whether something listens at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_WITHIN
    while not answers(url):
        if process is not None and process.poll() is not None:
            raise SystemExit(f"test services: the server for {url} exited ({process.returncode})")
        if time.monotonic() > deadline:
            raise SystemExit(f"test services: nothing answered at {url} in {START_WITHIN:g} s")
        time.sleep(0.1)


@contextmanager
def throwaway_redis(folder: Path) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--dir", str(folder), "--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def postgres_program(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them out of PATH, per version."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise SystemExit(f"test services: no {name}; install PostgreSQL (make system does)")
    return found


@contextmanager
def throwaway_postgres(folder: Path) -> Iterator[str]:
    # PostgreSQL refuses to run as root: as root, its files and server are postgres's.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = folder / "postgres"
    data.mkdir()
    if as_owner:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
    initdb = [postgres_program("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    subprocess.run([*as_owner, *initdb], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [postgres_program("pg_ctl"), "-D", str(data), "-o", options, "-w", "-l"]
    log = str(folder / "postgres.log")
    subprocess.run([*as_owner, *pg_ctl, log, "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        wait_for(url)
        yield url
    finally:
        stop = [postgres_program("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run([*as_owner, *stop], check=False, stdout=subprocess.DEVNULL)


def main(command: list[str]) -> int:
    env = dict(os.environ)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="signoff-test-")))
        os.chmod(folder, 0o755)
        redis = env.get("TEST_REDIS_URL", REDIS_URL)
        if not answers(redis):
            redis = stack.enter_context(throwaway_redis(folder))
            print(f"test services: nothing at the test Redis; started one at {redis}", flush=True)
        postgres = env.get("TEST_POSTGRES_URL", POSTGRES_URL)
        if not answers(postgres):
            postgres = stack.enter_context(throwaway_postgres(folder))
            print(f"test services: nothing at the test PostgreSQL; started {postgres}", flush=True)
        env |= {"TEST_REDIS_URL": redis, "TEST_POSTGRES_URL": postgres}
        return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if not arguments:
        raise SystemExit(__doc__)
    sys.exit(main(arguments))
