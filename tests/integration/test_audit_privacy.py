"""HTTP-backed actions and privacy, end to end: an action calls a real HTTP server through
``ctx.http``; its audit rows keep the response's status and a redacted summary, and no
sensitive or freeform value reaches the audit database's files, the PostgreSQL table or
the server's logs."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from signoff import Signoff, Text, ToolCall
from signoff.engine.context import ActionContext
from tests.support import EchoCallBot, Widget, free_port, running, serving, settings, widget

CARD = "4242 4242 4242 4242"
NOTE = "leave it with the neighbour, door code 7319"
PASSWORD = "hunter2-correct-horse"
TOKEN = "tok_live_9f8e7d6c5b4a"  # only the other system knows it; echoed in its answers
PLAINTEXT = [CARD, CARD.replace(" ", ""), NOTE, PASSWORD, TOKEN]


async def payments(request: Request) -> Response:
    """The other system: echoes what it was sent, as careless APIs do."""
    sent = await request.json()
    if sent["amount"] > 500:
        return JSONResponse({"error": "declined", "card_number": sent["card_number"]}, 402)
    if sent["amount"] < 10:
        text = f"ok token={TOKEN} password={sent['password']} card {sent['card_number']}"
        return PlainTextResponse(text)
    receipt = f"card {sent['card_number']} charged; note: {sent['note']}"
    return JSONResponse(
        {"charged": sent["amount"], "receipt": receipt, "token": TOKEN, "filler": "x" * 400}
    )


@pytest.fixture
async def payments_url() -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=[Route("/charge", payments, methods=["POST"])]),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    async with serving(config):
        yield f"http://127.0.0.1:{port}/charge"


class ChargeBot:
    """``charge <amount>`` → one charge call with a card, a password and a note."""

    async def respond(self, conversation: list[dict[str, Any]]) -> AsyncIterator[Any]:
        last = conversation[-1]
        if last["role"] == "tool":
            yield Text("finished")
            return
        amount = float(last["content"].split()[1])
        args = {"amount": amount, "card_number": CARD, "password": PASSWORD, "note": NOTE}
        yield ToolCall("charge", args)


def payments_app(url: str) -> Signoff:
    app = Signoff(bot=ChargeBot())

    @app.action(kind="write", sensitive=["card_number"], freeform=["note"], run_timeout=5)
    async def charge(
        ctx: ActionContext, amount: float, card_number: str, password: str, note: str
    ) -> dict[str, Any]:
        """Charge a card."""
        body = {"amount": amount, "card_number": card_number, "password": password, "note": note}
        answer = await ctx.http.post(url, json=body)
        if answer.status_code >= 400:
            # Careless, on purpose: the message quotes the card and the note.
            raise RuntimeError(f"card {card_number} declined; note was {note}")
        return {"charged": amount, "echo": f"{note} / {card_number}"}

    return app


async def charge(w: Widget, amount: float, ends: str) -> dict[str, Any]:
    await w.say(f"charge {amount}")
    card = await w.card("pending")
    await w.decide(card)
    return await w.update(card["card_id"], ends)


def database_bytes(audit_url: str) -> bytes:
    """The SQLite file and its write-ahead log, or a text dump of the PostgreSQL table."""
    url = make_url(audit_url)
    if url.drivername.startswith("sqlite"):
        path = Path(str(url.database))
        wal = Path(f"{path}-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "--table=audit_events",
            f"--host={url.host}",
            f"--port={url.port or 5432}",
            f"--username={url.username}",
            str(url.database),
        ],
        capture_output=True,
        check=True,
    )
    assert b"COPY public.audit_events" in dump.stdout
    return dump.stdout


def leaked(haystack: bytes | str) -> list[str]:
    data = haystack.encode() if isinstance(haystack, str) else haystack
    return [value for value in PLAINTEXT if value.encode() in data]


async def test_http_actions_are_audited_with_a_redacted_response_and_nothing_leaks(
    tmp_path: Any, audit_url: str, payments_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = settings(tmp_path, audit=audit_url)
    async with running(payments_app(payments_url), config) as server:
        async with widget(server) as w:
            await w.hello()
            done = await charge(w, 42.0, "done")
            assert done["results"][0]["status"] == "done"
            await charge(w, 999.0, "failed")
            await charge(w, 5.0, "done")
            await w.bot_says("finished")
        await server.engine.drain()
        rows = await server.engine.audit.rows(action="charge")
        on_disk = await asyncio.to_thread(database_bytes, audit_url)
        assert_rows(rows)
    # After shutdown too: the write-ahead log is folded into the database file.
    assert leaked(on_disk) == []
    assert leaked(await asyncio.to_thread(database_bytes, audit_url)) == []
    # The test's own client logs its frames (the visitor's own view) at DEBUG; the rest
    # is the server's, and the other system's, which logs nothing here.
    server_logs = "\n".join(
        logging.Formatter().format(record)
        for record in caplog.records
        if not record.name.startswith("websockets.client")
    )
    assert "action charge failed: RuntimeError" in server_logs
    assert "HTTP Request: POST" in server_logs  # the logs were captured at DEBUG
    assert leaked(server_logs) == []


def assert_rows(rows: list[dict[str, Any]]) -> None:
    assert [r["status"] for r in rows] == [
        "pending_confirmation",
        "success",
        "pending_confirmation",
        "failed",
        "pending_confirmation",
        "success",
    ]
    for row in rows:
        params = row["params"]
        assert (params["card_number"], params["password"]) == ("[redacted]", "[redacted]")
        assert params["note"]["length"] == len(NOTE)
        assert params["note"]["hmac"].startswith("hmac-sha256:")
        assert set(params["note"]) == {"length", "hmac"}
        # In words as in the documents: masked, the note by its length alone.
        assert row["params_text"].split("\n")[1:] == [
            "Card number: [redacted]",
            "Password: [redacted]",
            f"Note: (not kept: {len(NOTE)} characters)",
        ]
        assert leaked(str(row)) == []
    ok, failed, text = rows[1], rows[3], rows[5]
    assert ok["response"]["status"] == 200
    summary = ok["response"]["body"]
    assert len(summary) <= 200
    assert '"token": "[redacted]"' in summary
    # A string or a message part that quotes the call's secrets or free text goes whole:
    # where a masked value stood would tell what a short one was.
    assert '"receipt": "[redacted]"' in summary
    assert ok["result"]["echo"] == "[redacted]"
    assert ok["result_text"] == "Charged: 42; Echo: [redacted]"
    assert failed["result_text"] is None  # its error says what happened
    assert failed["response"] == {
        "status": 402,
        "body": '{"error": "declined", "card_number": "[redacted]"}',
    }
    assert failed["error"] == "[redacted]; [redacted]"
    assert text["response"] == {"status": 200, "body": "[redacted]"}
    assert all(r["duration_ms"] > 0 for r in (ok, failed, text))


async def test_a_request_is_bounded_by_the_calls_run_timeout(tmp_path: Any) -> None:
    """An action whose other system never answers fails at its run_timeout, with the
    timeout in the row; the shared client is closed when the server stops."""
    hang = asyncio.Event()

    async def slow(request: Request) -> Response:
        await hang.wait()
        return PlainTextResponse("late")

    port = free_port()
    other = uvicorn.Config(
        Starlette(routes=[Route("/", slow, methods=["POST"])]),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    app = Signoff(bot=ChargeBot())

    @app.action(kind="write", run_timeout=0.5, confirm=False)
    async def charge(
        ctx: ActionContext, amount: float, card_number: str, password: str, note: str
    ) -> None:
        """Charge a card, slowly."""
        await ctx.http.post(f"http://127.0.0.1:{port}/", json={"amount": amount})

    async with serving(other):
        async with running(app, settings(tmp_path)) as server:
            async with widget(server) as w:
                await w.hello()
                await w.say("charge 1")
                await w.bot_says("finished")
            engine: Any = server.engine
            [row] = await engine.audit.rows(action="charge")
            assert row["status"] == "failed" and row["decided_by"] == "auto"
            assert row["response"] is None  # no answer came
            assert row["duration_ms"] < 2000
            client = engine.calls.http
        hang.set()
    assert client is not None and client.is_closed


async def test_calls_share_the_engines_client(tmp_path: Any, payments_url: str) -> None:
    """One HTTP client per engine: the same connections serve every call."""
    app = payments_app(payments_url)
    async with running(app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await charge(w, 42.0, "done")
        client = server.engine.calls.http
        await charge(w, 43.0, "done")
        assert client is not None and server.engine.calls.http is client


class MisnamingBot:
    """Misnames the free text, then calls an action that does not exist, then passes an
    extra argument beside a one-letter note: calls refused before any card."""

    async def respond(self, conversation: list[dict[str, Any]]) -> AsyncIterator[Any]:
        if conversation[-1]["role"] == "tool":
            yield Text("sorry")
            return
        yield ToolCall("remark", {"order_id": 7, "notes": NOTE})
        yield ToolCall("remarks", {"order_id": 7, "text": NOTE, "card": {"number": CARD}})
        yield ToolCall("remark", {"order_id": 7, "note": "x", "mood": "fine"})


async def test_every_string_of_a_refused_call_is_digested_and_errors_are_not_masked_in_words(
    tmp_path: Any, audit_url: str
) -> None:
    app = Signoff(bot=MisnamingBot())

    @app.action(kind="write", freeform=["note"])
    async def remark(ctx: ActionContext, order_id: int, note: str) -> None:
        """Add a remark to an order."""

    async with running(app, settings(tmp_path, audit=audit_url)) as server:
        async with widget(server) as w:
            await w.hello()
            await w.say("leave a remark")
            await w.bot_says("sorry")
        await server.engine.drain()
        rows = await server.engine.audit.rows(status="refused")
        on_disk = await asyncio.to_thread(database_bytes, audit_url)
    assert leaked(on_disk) == [] and leaked(str(rows)) == []
    misnamed, unknown, extra = rows
    assert misnamed["params"]["order_id"] == 7
    assert set(misnamed["params"]["notes"]) == {"length", "hmac"}
    assert misnamed["params"]["notes"]["length"] == len(NOTE)
    assert unknown["kind"] == "unknown" and unknown["error"] == "unknown action 'remarks'"
    assert unknown["params"]["text"]["length"] == len(NOTE)
    assert unknown["params"]["card"]["number"]["length"] == len(CARD)
    # In words by their names alone: the bot chose them, not the action.
    assert unknown["params_text"] == (
        "Order id: 7\n"
        f"Text: (not kept: {len(NOTE)} characters)\n"
        f"Card: Number: (not kept: {len(CARD)} characters)"
    )
    assert extra["params"]["note"]["length"] == 1
    assert extra["params"]["mood"]["length"] == len("fine")
    # The one-letter note is not "found" inside the words of the message.
    assert extra["error"] == "remark: mood: Extra inputs are not permitted"


async def test_the_visitors_reason_for_declining_reaches_the_bot_and_no_log(
    tmp_path: Any, audit_url: str
) -> None:
    why = "my husband already paid it, call 0151 2345"
    app = Signoff(bot=EchoCallBot(calls=("wipe",)))

    @app.action(kind="destructive")
    async def wipe(ctx: ActionContext, target: str) -> str:
        """Wipe a disk."""
        return "wiped"

    async with running(app, settings(tmp_path, audit=audit_url)) as server:
        async with widget(server) as w:
            await w.hello()
            await w.say("wipe disk1")
            card = await w.card("pending")
            await w.decide(card, "cancel", reason=why)
            update = await w.update(card["card_id"], "cancelled")
            assert update["reason"] == why  # the visitor's own tabs show their words
            told = await w.bot_says("declined")
            assert json.loads(told["text"].removeprefix("result: "))["why"] == why
        await server.engine.drain()
        [row] = await server.engine.audit.rows(status="cancelled")
        resource = (
            await server.engine.describe(await server.engine.store.get_card(card["card_id"]))
        )[0]
        on_disk = await asyncio.to_thread(database_bytes, audit_url)
    assert row["error"] == f"the user declined, saying why ({len(why)} characters, not kept)"
    assert resource["reason"] == row["error"]  # what the team, webhooks and Slack see
    assert why.encode() not in on_disk
