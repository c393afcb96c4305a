"""The Signoff app the benchmarks serve: ``signoff serve benchmarks.echo_app:app``.

Its bot answers every message with the message's own text (one bot step, one
streamed reply); ``stream ...`` with fifty pieces, each arriving on its own as a
model's would; and ``cancel order N`` it hands to the demo bot: a read step that
looks the order up, then a destructive card, then "Done" after the confirm. That
is the demo's card flow frame for frame, but the shop here keeps no state, so
the same order can be cancelled again and again and every confirmed card ends
``done``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from benchmarks.peers import STREAM_PREFIX, stream_pieces
from signoff import Signoff
from signoff.core.conversation import Conversation, Text, ToolCall
from signoff.demo import DemoBot
from signoff.demo.shop import ORDERS
from signoff.engine.context import ActionContext

ORIGINS = ["http://127.0.0.1", "http://127.0.0.1:*"]
CANCEL = re.compile(r"^\s*cancel orders? ", re.I)


class EchoBot:
    """Says back what the visitor said; ``cancel order N`` goes through a card."""

    def __init__(self) -> None:
        self.demo = DemoBot()

    async def respond(self, conversation: Conversation) -> AsyncIterator[Text | ToolCall]:
        said = next((m["content"] for m in reversed(conversation) if m.get("role") == "user"), "")
        if CANCEL.match(said):
            async for item in self.demo.respond(conversation):
                yield item
        elif said.startswith(STREAM_PREFIX):
            # A model's stream: pieces that each arrive on their own (a network read).
            for piece in stream_pieces(said):
                yield Text(piece)
                await asyncio.sleep(0)
        else:
            yield Text(said)


def build() -> Signoff:
    app = Signoff(bot=EchoBot())
    app.site("bench", ORIGINS)

    @app.action(kind="read")
    async def get_order(ctx: ActionContext, order_id: int) -> dict[str, Any]:
        """Look up one order."""
        found = ORDERS.get(order_id)
        if found is None:
            raise LookupError(f"there is no order {order_id}")
        return {"order_id": order_id, **found}

    @app.action(
        kind="destructive",
        message="Cancel order #{{ order_id }} for {{ customer }}, total {{ total|money }}?",
    )
    async def cancel_order(
        ctx: ActionContext, order_id: int, customer: str, total: float
    ) -> dict[str, Any]:
        """Cancel an order (nothing is changed: the benchmark repeats it)."""
        return {"order_id": order_id, "status": "cancelled"}

    return app


app = build()
