"""The engine's turns without sockets: server CPU and store round trips per turn.

The load benchmarks (``benchmarks.run``) measure whole round trips through sockets; this
one takes the sockets away, so what a store costs a turn stands out. One process runs the
benchmark app's bot (``benchmarks.echo_app``) over the memory store and over Redis, side
by side: N sessions (each with a listener, as a socket would be) take turns together,
a few of warm-up, then T turns each that count. Per turn it prints the process's CPU time,
and on Redis the commands the instance sent by name (a script by its own).

It also counts the objects the turns left in reference cycles, which only the cycle
collector frees (a pause of every socket while it runs): the engine's own turns leave none.

Three kinds of turn, as in the load benchmarks: ``message`` (a message answered with one
piece: four frames), ``stream`` (fifty pieces, each arriving on its own) and ``card``
(``cancel order 1001``: a read, a card, the visitor's confirm, the call, the bot's
closing words).

To compare with another version of signoff, run it with that version first on the path:
``PYTHONPATH=/path/to/old/server:. python -m benchmarks.engine_turns``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import hashlib
import json
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from benchmarks.echo_app import build
from signoff.audit import open_audit
from signoff.engine import Engine
from signoff.store import News, SessionRecord, open_store

REDIS_URL = "redis://127.0.0.1:6379/0"
KINDS = ("message", "stream", "card")
SECRET = "benchmark-secret-" + "x" * 32


def _script_names() -> dict[str, str]:
    """The store's scripts by SHA1, to name an EVALSHA by its script."""
    try:
        from signoff.store.redis_lua import SCRIPTS
    except ImportError:  # a version of signoff with its scripts elsewhere
        return {}
    return {hashlib.sha1(source.encode()).hexdigest(): name for name, source in SCRIPTS.items()}


class CommandCounter:
    """Counts the commands the store sends: on its shared connection each one by name
    (scripts by theirs), through redis-py (older versions) a pipeline once."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._originals: list[tuple[type, str, Any]] = []

    def __enter__(self) -> CommandCounter:
        counts = self.counts
        execute = Redis.execute_command
        pipeline = Pipeline.execute

        async def counted(client: Redis, *args: Any, **options: Any) -> Any:
            counts[str(args[0])] += 1
            return await execute(client, *args, **options)

        async def counted_pipeline(pipe: Pipeline, *args: Any, **options: Any) -> Any:
            counts["PIPELINE"] += 1
            return await pipeline(pipe, *args, **options)

        self._originals = [(Redis, "execute_command", execute), (Pipeline, "execute", pipeline)]
        Redis.execute_command = counted  # type: ignore[method-assign]
        Pipeline.execute = counted_pipeline  # type: ignore[method-assign,assignment]
        try:
            from signoff.store.shared_connection import _Protocol
        except ImportError:  # a version of signoff without it
            return self
        send, scripts = _Protocol.send, _script_names()

        def counted_send(protocol: _Protocol, args: Any) -> Any:
            name = str(args[0])
            counts[scripts.get(str(args[1]), name) if name == "EVALSHA" else name] += 1
            return send(protocol, args)

        self._originals.append((_Protocol, "send", send))
        _Protocol.send = counted_send  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in self._originals:
            setattr(owner, name, original)


class CycleCounter:
    """Counts the objects the cycle collector frees while it is entered: those left in
    reference cycles. Collecting at both ends leaves out what came before and counts what
    is still to be freed at the end."""

    def __init__(self) -> None:
        self.freed = 0

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            self.freed += info["collected"]

    def __enter__(self) -> CycleCounter:
        gc.collect()
        gc.callbacks.append(self._collected)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.collect()
        gc.callbacks.remove(self._collected)


async def measure(store_url: str, kind: str, sessions: int, turns: int) -> dict[str, Any]:
    app = build()
    with tempfile.TemporaryDirectory() as tmp:
        audit = open_audit(f"sqlite:///{tmp}/audit.db", SECRET)
        await audit.start()
        store = open_store(store_url)
        await store.start()
        engine = Engine(
            registry=app.registry,
            bot=app.bot,
            store=store,
            audit=audit,
            secret=SECRET,
            session_ttl=600,
        )
        try:
            opened = [await engine.open_session("bench", "u") for _ in range(sessions)]
            # Each session's newest pending card, as its socket would see it.
            pending: dict[str, dict[str, Any]] = {}
            for session in opened:
                store.subscribe(
                    session.session_id, functools.partial(seen, pending, session.session_id)
                )
            one = turn_of(kind, engine, pending)

            async def round_of(n: int) -> None:
                await asyncio.gather(*(one(session, n) for session in opened))

            for n in range(3):
                await round_of(n)
            with CommandCounter() as counter, CycleCounter() as cycles:
                started = time.process_time()
                for n in range(3, 3 + turns):
                    await round_of(n)
                cpu = time.process_time() - started
        finally:
            await engine.drain()
            await store.close()
            await audit.close()
    total = sessions * turns
    return {
        "cpu_us": cpu / total * 1e6,
        "commands": {name: count / total for name, count in counter.counts.most_common()},
        "cycles": cycles.freed / total,
    }


def seen(pending: dict[str, dict[str, Any]], session_id: str, news: News) -> None:
    """Keep the pending cards among the frames a session's listener hears."""
    for _, text in news.frames or ():
        if '"type": "card"' in text:
            frame = json.loads(text)
            if frame["status"] == "pending":
                pending[session_id] = frame


def turn_of(
    kind: str, engine: Engine, pending: dict[str, dict[str, Any]]
) -> Callable[[SessionRecord, int], Awaitable[None]]:
    async def message(session: SessionRecord, n: int) -> None:
        await engine.handle_message(session, f"hello {n}", f"c{n}")

    async def stream(session: SessionRecord, n: int) -> None:
        await engine.handle_message(session, f"stream {n}", f"c{n}")

    async def card(session: SessionRecord, n: int) -> None:
        await engine.handle_message(session, "cancel order 1001", f"c{n}")
        card = pending.pop(session.session_id)
        await engine.decide(session, card["card_id"], "confirm", card["args_hash"])
        await engine.drain()

    return {"message": message, "stream": stream, "card": card}[kind]


async def main(options: argparse.Namespace) -> None:
    prefix = f"bench-engine-{secrets.token_hex(4)}"
    rows = [("memory", "memory://"), ("redis", f"{options.redis_url}?prefix={prefix}")]
    print(
        f"{'turn':8} {'store':7} {'CPU µs/turn':>12} {'cycles/turn':>12}  Redis commands per turn"
    )
    for kind in options.kinds.split(","):
        for name, url in rows:
            figures = await measure(url, kind, options.sessions, options.turns)
            commands = ", ".join(f"{c} {n:.2f}" for c, n in figures["commands"].items() if n)
            print(
                f"{kind:8} {name:7} {figures['cpu_us']:>12,.0f} {figures['cycles']:>12,.1f}"
                f"  {commands or '-'}"
            )
    client = Redis.from_url(options.redis_url)
    keys = [key async for key in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--sessions", type=int, default=100, help="sessions (100)")
    parser.add_argument("--turns", type=int, default=10, help="counted turns each (10)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="message,stream,card")
    parser.add_argument("--redis", dest="redis_url", default=REDIS_URL, help=REDIS_URL)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
