"""An MCP server's tools as signoff actions, the server of the tests' own (tests/mcp_shop.py)
started over stdio with the official SDK: hints choose the kind, cards hold what changes,
and each call reaches the server once, through signoff only."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import StdioServerParameters

from benchmarks.servers import wait_listening
from signoff import Signoff
from signoff.adapters.mcp import mcp_actions
from tests.support import EchoCallBot, free_port, running, settings, widget

SHOP = Path(__file__).parents[1] / "mcp_shop.py"
TOOLS = ("get_stock", "delete_product", "restock", "broken")


def shop_app(calls: Path, **options: object) -> Signoff:
    app = Signoff(bot=EchoCallBot(calls=TOOLS))
    server = StdioServerParameters(
        command=sys.executable, args=[str(SHOP)], env={"SHOP_CALLS": str(calls)}
    )
    mcp_actions(app, server, **options)  # type: ignore[arg-type]
    return app


async def test_the_servers_tools_are_actions_behind_cards(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    calls.touch()
    async with running(shop_app(calls), settings(tmp_path)) as server, widget(server) as w:
        registry = server.app.state.runtime.engine.registry
        assert {name: str(registry.get(name).kind) for name in TOOLS} == {
            "get_stock": "read",  # readOnlyHint
            "delete_product": "destructive",  # destructiveHint
            "restock": "write",  # no hint
            "broken": "write",
        }
        await w.hello()
        await w.say("get_stock A1")
        await w.bot_says('"in_stock": 7')  # a read: no card
        assert not [f for f in w.frames if f["type"] == "card"]

        await w.say("delete_product A1")
        card = await w.card("pending")
        assert card["kind"] == "destructive"
        assert card["actions"][0]["title"] == "Delete product"
        assert "Remove a product from the catalogue for good" in card["actions"][0]["effect"]
        assert calls.read_text() == ""  # held
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says("deleted A1")

        await w.say("restock A1")
        card = await w.card("pending")
        await w.decide(card, "cancel")
        await w.bot_says("declined")

        await w.say("broken A1")
        card = await w.card("pending")
        await w.decide(card)
        failed = await w.update(card["card_id"], "failed")
        # The server's own words for its failure (this SDK's hide the exception's).
        assert failed["results"][0]["error"] == "Error executing tool broken"
        await server.engine.drain()
        rows = await server.engine.audit.rows(action="delete_product", status="success")
    assert calls.read_text() == "delete A1\n"  # once, and nothing declined
    assert len(rows) == 1


async def test_the_site_names_kinds_and_messages_its_hints_do_not(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    calls.touch()
    app = shop_app(
        calls,
        kinds={"restock": "read"},
        messages={"delete_product": "Delete {{ target }} from the shop for good?"},
    )
    async with running(app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("restock B2")
        await w.bot_says('"ordered": 10')  # a read now: ran at once, with the default
        await w.say("delete_product B2")
        card = await w.card("pending")
        assert card["actions"][0]["effect"] == "Delete B2 from the shop for good?"
    assert calls.read_text() == "restock B2 10\n"


@pytest.fixture
def shop_over_http(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The test server on streamable HTTP: its URL, and the file its calls go to."""
    calls, log = tmp_path / "http-calls.txt", tmp_path / "mcp.log"
    calls.touch()
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(SHOP), str(port)],
            env={**os.environ, "SHOP_CALLS": str(calls)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(process, port, log, 20)
        yield f"http://127.0.0.1:{port}/mcp", calls
    finally:
        process.terminate()
        process.wait(10)


async def test_a_server_over_streamable_http(
    tmp_path: Path, shop_over_http: tuple[str, Path]
) -> None:
    url, calls = shop_over_http
    app = Signoff(bot=EchoCallBot(calls=TOOLS))
    mcp_actions(app, url)
    async with running(app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("restock C3")
        card = await w.card("pending")
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says('"ordered": 10')
    assert calls.read_text() == "restock C3 10\n"
