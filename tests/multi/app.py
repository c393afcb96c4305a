"""The app the multi-instance tests serve from several processes.

Every run of an action is appended to the file named by ``SIGNOFF_TEST_RUNS``, so
a test can count runs across processes, including ones it killed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from signoff import Signoff, Text, ToolCall


def record(line: str) -> None:
    with open(os.environ["SIGNOFF_TEST_RUNS"], "a") as runs:
        runs.write(line + "\n")


class MultiBot:
    """``wipe a`` → a card; ``slowly wipe a`` streams ten pieces first; ``hang a`` → a card
    for an action that never finishes; after a card, it reports what came back."""

    async def respond(self, conversation: list[dict[str, Any]]) -> AsyncIterator[Any]:
        last = conversation[-1]
        if last["role"] == "tool":
            yield Text("result: " + last["content"])
            return
        words = last["content"].split()
        if words[0] == "slowly":
            for n in range(10):
                yield Text(f"piece {n}. ")
                await asyncio.sleep(0.1)
            words = words[1:]
        if words[0] == "wipe":
            yield ToolCall("wipe", {"target": words[1]})
        elif words[0] == "hang":
            yield ToolCall("hang", {"target": words[1]})
        else:
            yield Text("?")


app = Signoff(bot=MultiBot())


@app.action(kind="destructive", message="Wipe {{ target }}?")
async def wipe(ctx: Any, target: str) -> dict[str, Any]:
    record(f"wipe {target}")
    return {"wiped": target}


@app.action(kind="destructive", message="Hang on {{ target }}?", run_timeout=2.0)
async def hang(ctx: Any, target: str) -> dict[str, Any]:
    record(f"hang {target}")
    await asyncio.sleep(60)
    return {}
