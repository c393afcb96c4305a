"""One script call to Redis from many coroutines: redis-py's pool against the store's
shared connection, side by side in one run.

Each of C callers runs a one-line script N times, through the Redis client the store used
before (a redis-py ``BlockingConnectionPool``, as ``RedisStore.from_url`` makes it) and
through ``SharedConnection``. Printed per row: the process's CPU time per command, the
commands per second, and the ratio of the two clients' CPU per command. Redis's own CPU
per command in this run is printed beneath them (``INFO commandstats``), for scale.

``python -m benchmarks.redis_clients [--callers 1,100,1000] [--commands 2000]``
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from signoff.store.shared_connection import SharedConnection

REDIS_URL = "redis://127.0.0.1:6379/0"
SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])"

Call = Callable[[str, int], Awaitable[Any]]


async def timed(call: Call, prefix: str, callers: int, each: int) -> dict[str, float]:
    """CPU µs per command and commands per second, ``callers`` calling ``each`` times."""

    async def caller(n: int) -> None:
        for i in range(each):
            await call(f"{prefix}:{n}", i)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(callers)))
    commands = callers * each
    return {
        "cpu_us": (time.process_time() - cpu) / commands * 1e6,
        "rate": commands / (time.perf_counter() - wall),
    }


async def evalsha_stats(client: Redis) -> tuple[int, int]:
    """Redis's count of EVALSHA calls and the µs it spent on them, since it started."""
    stats: dict[str, Any] = await client.info("commandstats")
    evalsha = stats.get("cmdstat_evalsha", {})
    return int(evalsha.get("calls", 0)), int(evalsha.get("usec", 0))


async def main(options: argparse.Namespace) -> None:
    prefix = f"bench-clients-{secrets.token_hex(4)}"
    pool = BlockingConnectionPool.from_url(
        options.redis_url, decode_responses=True, max_connections=512, timeout=10,
        socket_connect_timeout=2, socket_timeout=5, health_check_interval=15, protocol=2,
    )  # fmt: skip
    client = Redis(connection_pool=pool)
    script = client.register_script(SCRIPT)
    sha = await client.script_load(SCRIPT)
    shared = SharedConnection(pool.connection_kwargs["host"], pool.connection_kwargs["port"])

    async def through_pool(key: str, i: int) -> Any:
        return await script(keys=[key], args=[i])

    async def through_shared(key: str, i: int) -> Any:
        return await shared.call("EVALSHA", sha, 1, key, i)

    print(f"{'callers':>7}  {'client':16} {'CPU µs/cmd':>10} {'cmds/s':>9}  ratio")
    calls_before, usec_before = await evalsha_stats(client)
    try:
        for callers in (int(c) for c in options.callers.split(",")):
            each = max(options.commands // callers, 3)
            rows = []
            clients = (("redis-py pool", through_pool), ("shared connection", through_shared))
            for name, call in clients:
                await call(f"{prefix}:warm", 0)
                rows.append((name, await timed(call, prefix, callers, each)))
            base = rows[0][1]["cpu_us"]
            for name, figures in rows:
                print(
                    f"{callers:>7}  {name:16} {figures['cpu_us']:>10,.0f} {figures['rate']:>9,.0f}"
                    f"  {figures['cpu_us'] / base:.2f}"
                )
        calls, usec = await evalsha_stats(client)
        per_call = (usec - usec_before) / max(calls - calls_before, 1)
        print(f"Redis itself, in this run: {per_call:.1f} µs per EVALSHA")
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await shared.close()
        await client.aclose()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--callers", default="1,100,1000", help="concurrent callers per row")
    parser.add_argument("--commands", type=int, default=4000, help="commands per row (4000)")
    parser.add_argument("--redis", dest="redis_url", default=REDIS_URL, help=REDIS_URL)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
