"""``GET /api/v1/audit`` over real HTTP, on SQLite and PostgreSQL: filters, keyset pages,
site scoping, the streamed CSV, and refused queries.

Answers are held to the OpenAPI document as in test_api.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DataError

import signoff.web.api
from signoff.audit.query import CSV_COLUMNS
from signoff.audit.upkeep import verify
from signoff.core.chain import CHAIN_VERSION, chain_key, key_id
from signoff.demo import demo_app
from tests.integration.audit_sample import HOSTILE, ROWS, SITES, START, TRICKY, matching, seed
from tests.integration.test_api import ADMIN_KEY, Api, error_code
from tests.support import SECRET, Server, running, settings, widget

DOCUMENTS = ("params", "result", "response")
KEY = chain_key(SECRET)


@pytest.fixture
async def server(audit_url: str, tmp_path: Any) -> AsyncIterator[Server]:
    config = settings(tmp_path, audit=audit_url, admin_key=ADMIN_KEY, sites=SITES)
    async with running(demo_app(), config) as server:
        await seed(server)
        yield server


@pytest.fixture
async def api(server: Server) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        yield Api(http)


async def numbers(api: Api, key: str = ADMIN_KEY, **params: Any) -> list[int]:
    """The sample indexes of the rows a query answers, in its order (one page of 500)."""
    answer = await api.call("GET", "/audit", key, params={"limit": 500, **params})
    assert answer.status_code == 200, answer.text
    assert answer.json()["next"] is None
    return [row["params"]["n"] for row in answer.json()["rows"]]


def iso(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


async def test_filters_combine(api: Api) -> None:
    assert await numbers(api) == matching(lambda e: True)
    assert await numbers(api, status="cancelled,rejected") == matching(
        lambda e: e.status in {"cancelled", "rejected"}
    )
    # since is inclusive, until exclusive; any offset, and Z.
    assert await numbers(api, since=iso(2), until=iso(6)) == [5, 4, 3, 2]
    shifted = (START + timedelta(minutes=2)).astimezone().isoformat()
    assert await numbers(api, since=shifted.replace("+00:00", "Z")) == matching(
        lambda e: e.ts >= START + timedelta(minutes=2)
    )
    assert await numbers(api, conversation="conv-3") == [6, 5, 4]
    assert await numbers(api, action="refund") == matching(lambda e: e.action == "refund")
    assert await numbers(api, session="s-conv-2", card="card-conv-2") == [3, 2]
    assert await numbers(api, site="blog") == [9, 7]
    assert await numbers(api, decided_by="auto") == [4]
    assert await numbers(api, decided_by="visitor") == matching(
        lambda e: (e.decided_by or "").startswith("user:")
    )
    assert await numbers(api, decided_by="teammate") == [9, 8, 3, 2]
    assert await numbers(api, decided_by="teammate:lena") == [9, 2]
    assert await numbers(api, decided_by="user:alice") == [1, 0]
    # All of them at once: each must hold.
    assert await numbers(
        api,
        status="success,rejected,cancelled",
        since=iso(1),
        until=iso(10),
        action="refund",
        decided_by="teammate",
        site="demo",
    ) == [3, 2]
    assert await numbers(api, conversation="conv-3", status="success", decided_by="visitor") == []


async def test_pages_walk_every_row_once_newest_first(api: Api) -> None:
    for limit in (1, 3, len(ROWS) - 1, len(ROWS), len(ROWS) + 1):
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor is not None:
                params["before"] = cursor
            body = (await api.call("GET", "/audit", ADMIN_KEY, params=params)).json()
            assert len(body["rows"]) <= limit
            seen += [row["params"]["n"] for row in body["rows"]]
            pages += 1
            cursor = body["next"]
            if cursor is None:
                break
        assert seen == list(reversed(range(len(ROWS)))), limit
        assert pages == -(-len(ROWS) // limit)
    # Paging within a filter.
    first = (
        await api.call("GET", "/audit", ADMIN_KEY, params={"limit": 2, "status": "success"})
    ).json()
    assert [r["params"]["n"] for r in first["rows"]] == [9, 4]
    rest = await numbers(api, status="success", before=first["next"])
    assert rest == [3, 0]


async def test_rows_are_complete_json(api: Api) -> None:
    body = (await api.call("GET", "/audit", ADMIN_KEY, params={"conversation": "conv-2"})).json()
    newest = body["rows"][0]
    assert set(newest) == set(CSV_COLUMNS)
    assert newest["ts"] == (START + timedelta(minutes=3)).isoformat(timespec="microseconds")
    assert newest["response"] == {"status": 200, "body": "ok"}
    assert (newest["decided_by"], newest["level"]) == ("teammate:ana", 2)
    assert newest["user_agent"] == "Mozilla/5.0 (X11)"
    assert newest["params"] == {"n": 3, "order_id": 1003}
    assert newest["seq"] is not None and len(newest["row_hash"]) == 64


async def test_a_key_for_one_site_reads_that_sites_rows_only(server: Server, api: Api) -> None:
    accounts = server.app.state.runtime.accounts
    blog = await accounts.create_key("blog-auditor", ["auditor"], ["blog"])
    demo = await accounts.create_key("demo-lead", ["support-lead"], ["demo"])
    assert await numbers(api, blog) == [9, 7]
    assert await numbers(api, blog, site="blog") == [9, 7]
    assert await numbers(api, blog, conversation="conv-1") == []
    assert await numbers(api, demo) == matching(lambda e: e.site == "demo")
    assert await numbers(api, demo, action="refund", decided_by="teammate:lena") == [2]
    for key, site in ((blog, "demo"), (demo, "blog")):
        refused = await api.call("GET", "/audit", key, params={"site": site})
        assert (refused.status_code, error_code(refused)) == (403, "forbidden")
        as_csv = await api.call("GET", "/audit", key, params={"site": site, "format": "csv"})
        assert as_csv.status_code == 403
    exported = parse_csv((await api.call("GET", "/audit", blog, params={"format": "csv"})).text)
    assert [json.loads(r["params"])["n"] for r in exported] == [7, 9]


async def test_a_host_backends_key_cannot_read_the_audit_log_or_cards(
    server: Server, api: Api
) -> None:
    host = await server.app.state.runtime.accounts.create_key("shop-backend", ["host"])
    for params in ({}, {"format": "csv"}):
        refused = await api.call("GET", "/audit", host, params=params)
        assert (refused.status_code, error_code(refused)) == (403, "forbidden")
    cards = await api.call("GET", "/cards", host)
    assert (cards.status_code, error_code(cards)) == (403, "forbidden")


def parse_csv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    return list(reader)


def same(column: str, cell: str, value: Any) -> bool:
    """Whether a CSV cell says what the JSON row does."""
    if column in DOCUMENTS:  # JSON text; an empty cell for None
        return bool(json.loads(cell or "null") == value)
    if value is None:
        return cell == ""
    if isinstance(value, float):
        return float(cell) == value
    return cell == str(value)


async def test_the_csv_streams_every_matching_row_oldest_first(api: Api) -> None:
    for params in ({}, {"status": "failed,refused,success"}, {"conversation": "conv-3"}):
        answer = await api.call("GET", "/audit", ADMIN_KEY, params={**params, "format": "csv"})
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        assert re.fullmatch(
            r'attachment; filename="signoff-audit-\d{8}T\d{6}Z\.csv"',
            answer.headers["content-disposition"],
        )
        assert "content-length" not in answer.headers  # streamed, not built whole
        exported = parse_csv(answer.text)
        rows = (await api.call("GET", "/audit", ADMIN_KEY, params={**params, "limit": 500})).json()[
            "rows"
        ]
        assert len(exported) == len(rows) > 0
        for cells, row in zip(exported, reversed(rows), strict=True):
            for column in CSV_COLUMNS:
                assert same(column, cells[column], row[column]), (column, cells[column])

    # Commas, quotes, newlines and non-ASCII come back as they went in, in plain columns
    # and inside JSON alike; limit and before do not cut the export.
    every = parse_csv(
        (
            await api.call(
                "GET", "/audit", ADMIN_KEY, params={"format": "csv", "limit": 1, "before": "3"}
            )
        ).text
    )
    assert len(every) == len(ROWS)
    assert every[5]["error"] == TRICKY
    assert json.loads(every[8]["params"])["note"] == TRICKY
    assert every[10]["action"] == HOSTILE


async def test_the_csv_reads_each_call_as_its_card_showed_it(server: Server, api: Api) -> None:
    note = '=HYPERLINK("http://x") ring twice'
    async with widget(server) as w:
        await w.hello()
        session = w.welcome["session_id"]
        for phrase in ("cancel order 1001", f"note on order 1002: {note}"):
            await w.say(phrase)
            card = await w.card("pending")
            await w.decide(card)
            await w.update(card["card_id"], "done")
    await server.engine.drain()
    mine = {"session": session}
    answer = await api.call("GET", "/audit", ADMIN_KEY, params={**mine, "format": "csv"})
    every = parse_csv(answer.text)
    # The demo bot looks an order up before it offers to cancel it: a read, in words too.
    looked_up = next(r for r in every if r["action"] == "get_order")
    assert (looked_up["params_text"], looked_up["result_text"]) == (
        "Order id: 1001",
        "Order id: 1001; Customer: Ada Lovelace; Total: 89.5; Status: open",
    )
    exported = [r for r in every if r["kind"] != "read"]
    words = [(r["action"], r["status"], r["params_text"], r["result_text"]) for r in exported]
    cancel = "Order: #1001\nCustomer: Ada Lovelace\nTotal: $89.50"
    # The visitor's note is not kept, in words or otherwise: only how long it was.
    noted = f"Order: #1002\nNote: (not kept: {len(note)} characters)"
    assert words == [
        ("cancel_order", "pending_confirmation", cancel, ""),
        ("cancel_order", "success", cancel, "Order #1001 cancelled"),
        ("add_note", "pending_confirmation", noted, ""),
        ("add_note", "success", noted, "Note added to order #1002"),
    ]
    assert "ring twice" not in answer.text
    assert all(r["chain_version"] == str(CHAIN_VERSION) for r in exported)
    # The JSON rows say the same, and the chain covers the words.
    mine["action"] = "cancel_order"
    rows = (await api.call("GET", "/audit", ADMIN_KEY, params=mine)).json()
    assert [r["result_text"] for r in rows["rows"]] == ["Order #1001 cancelled", None]
    assert (await verify(server.engine.audit.engine, {key_id(KEY): KEY})).intact


async def test_bad_queries_are_refused_and_change_nothing(server: Server, api: Api) -> None:
    for params in (
        {"status": "cancelled,bogus"},
        {"status": ""},
        {"since": "2024-05-01T12:00:00"},  # no offset: whose time?
        {"since": "1714564800"},  # seconds since 1970: ISO 8601 only
        {"until": "1714564800.5"},
        {"until": "yesterday"},
        {"since": iso(5), "until": iso(1)},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "ten"},
        {"before": "-1"},
        {"before": "abc"},
        {"before": "99999999999999999999"},
        {"format": "xml"},
        {"site": "Not A Site"},
        {"conversation": ""},
        {"action": "x" * 201},
        {"colour": "blue"},
    ):
        answer = await api.call("GET", "/audit", ADMIN_KEY, params=params)
        assert (answer.status_code, error_code(answer)) == (422, "invalid_query"), params
    twice = await api.call("GET", "/audit", ADMIN_KEY, params=[("status", "failed")] * 2)
    assert (twice.status_code, error_code(twice)) == (422, "invalid_query")
    assert len(await server.engine.audit.rows()) == len(ROWS)


async def test_reading_needs_a_valid_key(server: Server, api: Api) -> None:
    for key in (None, "not-a-key"):
        for params in ({}, {"format": "csv"}):
            answer = await api.call("GET", "/audit", key, params=params)
            assert (answer.status_code, error_code(answer)) == (401, "unauthorized")
            assert answer.headers["www-authenticate"].startswith("Bearer")
    revoked = await server.app.state.runtime.accounts.create_key("gone", ["auditor"])
    assert (await api.call("GET", "/audit", revoked)).status_code == 200
    keys = await server.app.state.runtime.accounts.list_keys()
    key_id = next(k.key_id for k in keys if k.name == "gone")
    await server.app.state.runtime.accounts.revoke_key(key_id)
    assert (await api.call("GET", "/audit", revoked)).status_code == 401


async def test_a_nul_byte_is_refused_as_the_requests_fault_on_every_backend(
    server: Server, api: Api
) -> None:
    """PostgreSQL cannot hold a NUL byte in text: such a request is refused (4xx), never
    answered as an outage to retry (503)."""
    for params in ({"action": "cancel\x00order"}, {"conversation": "conv\x00"}):
        answer = await api.call("GET", "/audit", ADMIN_KEY, params=params)
        assert (answer.status_code, error_code(answer)) == (422, "invalid_query"), params
    made = await api.call("POST", "/keys", ADMIN_KEY, {"name": "desk\x00", "roles": ["finance"]})
    assert made.status_code == 422
    revoked = await api.call("DELETE", "/keys/{key_id}", ADMIN_KEY, key_id="k%00")
    assert 400 <= revoked.status_code < 500
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/dashboard/audit", params={"action": "a\x00"})
        assert page.status_code < 500
    assert len(await server.engine.audit.rows()) == len(ROWS)


async def test_a_value_the_database_refuses_is_a_422_not_an_outage(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*args: Any) -> None:
        raise DataError("SELECT …", {}, ValueError("invalid byte sequence for encoding"))

    monkeypatch.setattr(signoff.web.api, "read_page", refused)
    answer = await api.call("GET", "/audit", ADMIN_KEY, params={"action": "refund"})
    assert (answer.status_code, error_code(answer)) == (422, "invalid_value")
