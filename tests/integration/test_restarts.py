"""A server restarted on the memory store, which keeps nothing: the cards it had are closed
in the audit log, not left pending forever, and the widget says the chat started over."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import insert

from signoff.audit.schema import audit_events
from signoff.audit.upkeep import FORGOTTEN, verify
from signoff.core.chain import chain_key, key_id
from signoff.demo import demo_app
from signoff.engine import Engine
from signoff.store import StoreUnavailable
from tests.support import SECRET, running, settings, widget


async def test_a_restart_closes_the_cards_it_forgot_and_only_those(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(tmp_path)
    async with running(demo_app(), config) as server, widget(server) as w:
        await w.hello()
        await w.say("cancel order 1001")
        await w.decide(await w.card("pending"))
        await w.bot_says("Done")
        await w.say("cancel orders 1002 1003")
        chain = await w.card("pending")  # still waiting when the server stops

    async with running(demo_app(), config) as server:
        rows = await server.engine.audit.rows(card_id=chain["card_id"])
        assert [(r["status"], r["error"]) for r in rows] == [
            ("pending_confirmation", "waits for the visitor"),
            ("pending_confirmation", "waits for the visitor"),
            ("interrupted", FORGOTTEN),
            ("interrupted", FORGOTTEN),
        ]
        assert [r["params"]["order_id"] for r in rows[2:]] == [1002, 1003]
        # The card that ran is left as it was.
        statuses = [r["status"] for r in await server.engine.audit.rows(action="cancel_order")]
        assert statuses.count("success") == 1
        key = chain_key(SECRET)
        check = await verify(server.engine.audit.engine, {key_id(key): key})
        assert check.intact, check.problems
    said = [r.getMessage() for r in caplog.records if "of an earlier run" in r.getMessage()]
    assert said == [
        "closed 1 cards of an earlier run as interrupted in the audit log: the memory store "
        "keeps nothing across restarts (SIGNOFF_STORE=redis://... does)"
    ]

    # A third start finds nothing left to close.
    caplog.clear()
    async with running(demo_app(), config) as server:
        assert len(await server.engine.audit.rows(status="interrupted")) == 2
    assert not [r for r in caplog.records if "of an earlier run" in r.getMessage()]


async def test_a_store_that_keeps_its_cards_keeps_them_open(
    tmp_path: Path, each_store: str
) -> None:
    config = settings(tmp_path)
    async with running(demo_app(), config) as server, widget(server) as w:
        await w.hello()
        await w.say("cancel order 1001")
        card = await w.card("pending")
    async with running(demo_app(), config) as server:
        statuses = [r["status"] for r in await server.engine.audit.rows(card_id=card["card_id"])]
        if each_store == "memory://":
            assert statuses == ["pending_confirmation", "interrupted"]
        else:
            assert statuses == ["pending_confirmation"]
            assert (await server.engine.store.get_card(card["card_id"])).status == "pending"


async def test_an_open_card_put_in_behind_signoffs_back_is_not_signed_at_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Someone who can write to the database copies a real opening row under a new card
    # and another amount: closing it would sign their row's words into one that checks.
    config = settings(tmp_path)
    async with running(demo_app(), config) as server, widget(server) as w:
        await w.hello()
        await w.say("cancel order 1001")
        card = await w.card("pending")
    async with running(demo_app(), config) as server:
        audit = server.engine.audit
        [opening, _] = await audit.rows(card_id=card["card_id"])
        forged = {
            **{k: v for k, v in opening.items() if k not in ("id", "seq")},
            "card_id": "card_forged",
            "params": {**opening["params"], "total": 1.0},
        }
        async with audit.engine.begin() as conn:
            await conn.execute(insert(audit_events).values(**forged))
    caplog.clear()
    async with running(demo_app(), config) as server:
        assert [r["status"] for r in await server.engine.audit.rows(card_id="card_forged")] == [
            "pending_confirmation"
        ]
    said = [r.getMessage() for r in caplog.records if "do not check" in r.getMessage()]
    assert len(said) == 1 and "left 1 open cards' rows as they are" in said[0]


async def test_the_sweeper_ends_with_the_server_even_if_a_sweep_swallows_its_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store client that turns a cancellation into a connection error (which the
    sweeper carries on from) must not keep the sweeper running after the server stops."""
    sweeping = asyncio.Event()

    async def sweep(self: Engine) -> None:
        sweeping.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise StoreUnavailable("the connection was closed") from None

    monkeypatch.setattr(Engine, "sweep", sweep)
    async with running(demo_app(), settings(tmp_path)):
        await asyncio.wait_for(sweeping.wait(), 5)
    await asyncio.sleep(0.5)  # more than the tests' sweep interval
    sweepers = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.endswith(".sweeper")]
    assert sweepers == []
