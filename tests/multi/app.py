"""The app the multi-instance tests serve from several processes.

Every run of an action is appended to the file named by ``TEST_RUNS_FILE``, so
a test can count runs across processes, including ones it killed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from signoff import Signoff, Text, team
from tests.support import EchoCallBot


def record(line: str) -> None:
    with open(os.environ["TEST_RUNS_FILE"], "a") as runs:
        runs.write(line + "\n")


class MultiBot(EchoCallBot):
    """``wipe a`` → a card, ``hang a`` → a card for an action that never finishes,
    ``refund a`` → a card for a support lead, then finance;
    ``slowly ...`` streams ten pieces first; after a card, it reports what came back."""

    def __init__(self) -> None:
        super().__init__(calls=("wipe", "hang", "refund"))

    async def respond(self, conversation: list[dict[str, Any]]) -> AsyncIterator[Any]:
        last = conversation[-1]
        if last["role"] == "user" and last["content"].startswith("slowly "):
            for n in range(10):
                yield Text(f"piece {n}. ")
                await asyncio.sleep(0.1)
            conversation = [*conversation[:-1], {**last, "content": last["content"][7:]}]
        async for item in super().respond(conversation):
            yield item


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


@app.action(kind="write", approver=team("support-lead", "finance"))
async def refund(ctx: Any, target: str) -> dict[str, Any]:
    record(f"refund {target} by {ctx.decided_by}")
    return {"refunded": target}
