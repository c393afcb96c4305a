"""Running one action call with its context; the HTTP client every call shares."""

from __future__ import annotations

from typing import Any

import httpx

from signoff.core.actions import Action
from signoff.core.cards import Card
from signoff.engine.context import ActionContext
from signoff.engine.executor import Outcome, idempotency_key, run_call
from signoff.engine.http import ActionHttp, shared_client
from signoff.store import SessionRecord


class Calls:
    """Runs calls for turns (reads, auto calls) and for cards (held calls)."""

    def __init__(self) -> None:
        self.http: httpx.AsyncClient | None = None  # ctx.http's, opened at first use

    async def run(
        self,
        action: Action,
        args: dict[str, Any],
        scope: SessionRecord | Card,
        key_scope: str,
        index: int,
        decided_by: str,
        card_id: str | None = None,
    ) -> Outcome:
        """Run the call; ``key_scope`` and ``index`` make its idempotency key."""
        if self.http is None:
            self.http = shared_client()
        ctx = ActionContext(
            site=scope.site,
            session_id=scope.session_id,
            user_id=scope.user_id,
            conversation_id=scope.conversation_id,
            idempotency_key=idempotency_key(key_scope, index),
            decided_by=decided_by,
            http=ActionHttp(self.http, action.run_timeout),
            card_id=card_id,
        )
        return await run_call(action, args, ctx)

    async def close(self) -> None:
        """At shutdown: let go of the actions' HTTP connections."""
        if self.http is not None:
            await self.http.aclose()
            self.http = None
