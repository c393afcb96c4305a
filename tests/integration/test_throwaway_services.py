"""`make test` on a machine where no Redis or PostgreSQL answers: tools/test_services.py
starts throwaway ones for the run, hands their URLs to the command, and stops them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tests.services import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
NOTHING_LISTENS = {  # ports 1 and 2: nothing answers there
    "TEST_REDIS_URL": "redis://127.0.0.1:1/0",
    "TEST_POSTGRES_URL": "postgresql://postgres@127.0.0.1:2/postgres",
}
USE_THEM = """
import asyncio, os, asyncpg, redis
redis_url, postgres_url = os.environ["TEST_REDIS_URL"], os.environ["TEST_POSTGRES_URL"]
assert redis.Redis.from_url(redis_url).ping()
async def use_postgres():
    conn = await asyncpg.connect(postgres_url)
    await conn.execute("CREATE DATABASE scratch")  # the tests create databases of their own
    await conn.close()
asyncio.run(use_postgres())
print(redis_url, postgres_url)
"""


def listening(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), 1):
            return True
    except OSError:
        return False


def wrapped(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -c code`` run under tools/test_services.py."""
    wrapper = [sys.executable, str(ROOT / "tools/test_services.py"), "--"]
    return subprocess.run(
        [*wrapper, sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_throwaway_servers_are_started_used_and_stopped() -> None:
    run = wrapped(USE_THEM, {**os.environ, **NOTHING_LISTENS})
    assert run.returncode == 0, run.stderr
    redis_url, postgres_url = run.stdout.splitlines()[-1].split()
    assert redis_url not in NOTHING_LISTENS.values()
    assert "started one at " + redis_url in run.stdout
    assert not listening(redis_url) and not listening(postgres_url)  # stopped at the end


def test_services_that_answer_are_used_as_they_are() -> None:
    # The suite's own Redis answers (it runs under the same wrapper): it is kept.
    run = wrapped("import os; print(os.environ['TEST_REDIS_URL'])", dict(os.environ))
    assert (run.returncode, run.stdout.splitlines()[-1]) == (0, REDIS_URL)
    assert "started one" not in run.stdout
