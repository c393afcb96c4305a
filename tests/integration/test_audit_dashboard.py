"""The dashboard's audit page, its conversation view and its CSV export, over real HTTP.

A teammate logged in reads the rows of the sites they cover; the filter form is read into
the API's query, so the same filter finds the same rows; everything shown is escaped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from signoff.demo import demo_app
from tests.integration.audit_sample import HOSTILE, ROWS, SITES, TRICKY, entry, matching, seed
from tests.integration.test_dashboard import PASSWORD, teammate
from tests.support import Server, approve_over_api, running, settings, widget

ROW = re.compile(r'<tr class="audit-row" data-row-id="(\d+)" data-status="(\w+)"')
HTMX = {"HX-Request": "true"}


@pytest.fixture
async def server(audit_url: str, tmp_path: Any) -> AsyncIterator[Server]:
    config = settings(tmp_path, audit=audit_url, sites=SITES)
    async with running(demo_app(), config) as server:
        accounts = server.app.state.runtime.accounts
        await accounts.create_teammate("lena", PASSWORD, ["support-lead"])
        await accounts.create_teammate("bea", PASSWORD, ["support-lead"], sites=["blog"])
        await seed(server)
        yield server


def shown(html: str) -> list[int]:
    """The sample indexes of the rows a page shows, in its order (row id n+1 is entry n)."""
    return [int(row_id) - 1 for row_id, _ in ROW.findall(html)]


async def test_the_audit_pages_need_a_login(server: Server) -> None:
    async with teammate(server) as nobody:
        for path in (
            "/dashboard/audit",
            "/dashboard/audit/rows",
            "/dashboard/audit/older?before=5",
            "/dashboard/audit.csv",
            "/dashboard/conversations/conv-1",
        ):
            page = await nobody.http.get(path)
            assert (page.status_code, page.headers["location"]) == (303, "/dashboard/login"), path
            fragment = await nobody.http.get(path, headers=HTMX)
            assert (fragment.status_code, fragment.headers["hx-redirect"]) == (
                401,
                "/dashboard/login",
            )
            assert "conv-" not in page.text + fragment.text


async def test_the_audit_page_filters_and_pages(server: Server) -> None:
    async with teammate(server, "lena") as lena:
        home = await lena.page("/dashboard")
        assert 'href="/dashboard/audit"' in home.text  # in the nav
        page = await lena.page("/dashboard/audit")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert shown(page.text) == matching(lambda e: True)
        assert 'aria-current="page">Audit log' in page.text
        assert 'href="/dashboard/conversations/conv-2"' in page.text
        assert 'href="/dashboard/audit.csv"' in page.text

        # The form's htmx request: the results alone, and the page's URL for the bar.
        params = [("status", "cancelled"), ("status", "rejected"), ("decided_by", "visitor")]
        rows = await lena.http.get("/dashboard/audit/rows", params=params, headers=HTMX)
        assert rows.status_code == 200
        assert "<form" not in rows.text
        assert shown(rows.text) == [10, 7, 1]
        query = "status=cancelled&status=rejected&decided_by=visitor"
        assert rows.headers["hx-push-url"] == f"/dashboard/audit?{query}"
        assert f'href="/dashboard/audit.csv?{query.replace("&", "&amp;")}"' in rows.text
        # The same URL as a page: the form comes back filled in.
        again = await lena.page(f"/dashboard/audit?{query}")
        assert shown(again.text) == [10, 7, 1]
        assert 'value="cancelled" checked' in again.text
        assert '<option value="visitor" selected>' in again.text

        # Times are UTC; an exact decider wins over the sort chosen beside it.
        timed = await lena.page(
            "/dashboard/audit?since=2024-05-01T12:02&until=2024-05-01T12:06:00"
            "&decided_by=visitor&decider=teammate:ana"
        )
        assert shown(timed.text) == [3]
        assert shown((await lena.page("/dashboard/audit?action=refund&site=blog")).text) == [9, 7]
        none = await lena.page("/dashboard/audit?conversation=nope")
        assert shown(none.text) == [] and "No audit row matches" in none.text

        # Older rows, 50 at a time: the sample is smaller, so the cursor is given by hand.
        older = await lena.http.get("/dashboard/audit/older?before=4", headers=HTMX)
        assert shown(older.text) == [2, 1, 0]
        assert "Older rows" not in older.text


async def test_a_page_of_fifty_links_to_the_older_rows(server: Server) -> None:
    audit = server.app.state.runtime.audit
    for _ in range(50):
        await audit.record(entry(1))  # cancelled, again and again
    async with teammate(server, "lena") as lena:
        page = await lena.page("/dashboard/audit?status=cancelled")
        assert len(shown(page.text)) == 50
        cursor = re.search(r'hx-get="/dashboard/audit/older\?([^"]+)"', page.text)
        assert cursor is not None
        query = cursor.group(1).replace("&amp;", "&")
        assert query.startswith("status=cancelled&before=")
        older = await lena.http.get(f"/dashboard/audit/older?{query}", headers=HTMX)
        assert shown(older.text) == [10, 7, 1]  # the sample's own cancelled rows
        assert "Older rows" not in older.text
        # Without JavaScript the link opens the older page as a page.
        assert f'href="/dashboard/audit?{cursor.group(1)}"' in page.text


async def test_bad_filters_are_said_and_show_nothing(server: Server) -> None:
    async with teammate(server, "lena") as lena:
        for query, status, says in (
            ("status=bogus", 400, "unknown status"),
            ("since=tomorrow", 400, "since: not a date"),
            ("since=2024-05-02T00:00&until=2024-05-01T00:00", 400, "since is after until"),
            ("colour=blue", 400, "unexpected fields: colour"),
            ("action=a&action=b", 400, "given more than once"),
            ("site=Bad+Site", 400, "site"),
        ):
            page = await lena.page(f"/dashboard/audit?{query}")
            assert (page.status_code, shown(page.text)) == (status, []), query
            assert says in page.text, (query, page.text)
            fragment = await lena.http.get(f"/dashboard/audit/rows?{query}", headers=HTMX)
            assert fragment.status_code == status and "hx-push-url" not in fragment.headers
            assert (await lena.http.get(f"/dashboard/audit.csv?{query}")).status_code == status


async def test_a_teammate_sees_the_rows_of_the_sites_they_cover(server: Server) -> None:
    async with teammate(server, "bea") as bea:
        assert shown((await bea.page("/dashboard/audit")).text) == [9, 7]
        refused = await bea.page("/dashboard/audit?site=demo")
        assert refused.status_code == 403 and "you do not cover the site" in refused.text
        assert (await bea.page("/dashboard/conversations/conv-1")).status_code == 404
        assert (await bea.page("/dashboard/conversations/conv-9")).status_code == 200
        exported = await bea.http.get("/dashboard/audit.csv")
        rows = list(csv.DictReader(io.StringIO(exported.text, newline="")))
        assert [json.loads(r["params"])["n"] for r in rows] == [7, 9]
        assert (await bea.http.get("/dashboard/audit.csv?site=demo")).status_code == 403


async def test_the_log_s_own_data_is_escaped(server: Server) -> None:
    async with teammate(server, "lena") as lena:
        page = await lena.page("/dashboard/audit?conversation=conv-4")
        assert shown(page.text) == [10]
        assert HOSTILE not in page.text
        assert "&lt;img src=x onerror=" in page.text
        failed = await lena.page("/dashboard/audit?status=failed")
        assert "refund, &#34;partial&#34;" in failed.text


async def test_the_conversation_view_tells_what_happened_oldest_first(server: Server) -> None:
    async with teammate(server, "lena") as lena:
        page = await lena.page("/dashboard/conversations/conv-3")
        assert page.status_code == 200
        assert shown(page.text) == [4, 5, 6]
        assert 'href="/dashboard/audit.csv?conversation=conv-3"' in page.text
        assert (await lena.page("/dashboard/conversations/nothing-here")).status_code == 404
        assert (await lena.page("/dashboard/conversations/" + "x" * 65)).status_code == 404


async def test_a_real_escalation_is_followed_from_the_conversation_view(
    server: Server,
) -> None:
    key = await server.app.state.runtime.accounts.create_key("desk", ["support-lead"])
    async with widget(server) as visitor:
        await visitor.hello()
        await visitor.say("refund 250 on order 1002")
        card = await visitor.card("waiting")
        assert (await approve_over_api(server.url, card["card_id"], key)).status_code == 200
        await visitor.update(card["card_id"], "done")
    rows = await server.engine.audit.rows(card_id=card["card_id"])
    conversation_id = rows[0]["conversation_id"]
    async with teammate(server, "lena") as lena:
        listed = await lena.page("/dashboard/audit?decided_by=teammate:key:desk")
        assert f'href="/dashboard/conversations/{conversation_id}"' in listed.text
        page = await lena.page(f"/dashboard/conversations/{conversation_id}")
        assert page.status_code == 200
        ids = [int(i) for i, _ in ROW.findall(page.text)]
        assert ids == sorted(ids) and len(ids) == len(
            await server.engine.audit.rows(conversation_id=conversation_id)
        )
        assert f'href="/dashboard/cards/{card["card_id"]}"' in page.text  # the team card
        assert "teammate:key:desk" in page.text and 'data-status="success"' in page.text


async def test_the_csv_export_follows_the_filters(server: Server) -> None:
    async with teammate(server, "lena") as lena:
        answer = await lena.http.get(
            "/dashboard/audit.csv",
            params=[("status", "failed"), ("status", "refused"), ("action", "note")],
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        assert answer.headers["content-disposition"].startswith(
            'attachment; filename="signoff-audit-'
        )
        rows = list(csv.DictReader(io.StringIO(answer.text, newline="")))
        assert [json.loads(r["params"]) for r in rows] == [
            {"n": 8, "order_id": 1008, "note": TRICKY}
        ]
        everything = await lena.http.get("/dashboard/audit.csv")
        parsed = list(csv.DictReader(io.StringIO(everything.text, newline="")))
        assert len(parsed) == len(ROWS)
        assert parsed[5]["error"] == TRICKY
