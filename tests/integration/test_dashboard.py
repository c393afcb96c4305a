"""The dashboard over real HTTP: logins, cookies, CSRF, roles and decisions on the demo shop.

Decisions refused at the door (no login, no or a wrong CSRF token, another site's Origin, a
malformed form) change nothing and are audited as refused attempts on the card they name.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url

from signoff.audit.schema import teammates
from signoff.demo import demo_app
from signoff.web import logins
from signoff.web.health import HEALTH_TTL
from tests.services import POSTGRES_ADMIN_URL
from tests.support import (
    Server,
    Widget,
    approve_over_api,
    free_port,
    running,
    settings,
    settled_statuses,
    widget,
)

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf" value="([^"]+)"')
FOREIGN = {"Origin": "https://evil.example"}


@pytest.fixture
async def server(each_store: str, tmp_path: Any) -> AsyncIterator[Server]:
    async with running(demo_app(), settings(tmp_path)) as server:
        accounts = server.app.state.runtime.accounts
        await accounts.create_teammate("lena", PASSWORD, ["support-lead"])
        await accounts.create_teammate("omar", PASSWORD, ["support-lead"])
        await accounts.create_teammate("fred", PASSWORD, ["finance"])
        yield server


class Browserless:
    """A teammate's HTTP client: cookies kept, CSRF tokens read off the pages."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.csrf = ""

    async def page(self, path: str) -> httpx.Response:
        response = await self.http.get(path)
        if found := TOKEN.search(response.text):
            self.csrf = found.group(1)
        return response

    async def log_in(self, name: str, password: str = PASSWORD) -> httpx.Response:
        await self.page("/dashboard/login")
        form = {"name": name, "password": password, "csrf": self.csrf}
        return await self.http.post("/dashboard/login", data=form)

    async def decide(
        self,
        card_id: str,
        verdict: str = "approve",
        level: str = "1",
        headers: dict[str, str] | None = None,
        **fields: str | None,
    ) -> httpx.Response:
        """Post a decision as the card page's form does; a field given as None is left out."""
        form = {"csrf": self.csrf, "verdict": verdict, "level": level, **fields}
        return await self.http.post(
            f"/dashboard/cards/{card_id}/decide",
            data={k: v for k, v in form.items() if v is not None},
            headers=headers,
        )


@asynccontextmanager
async def teammate(server: Server, name: str | None = None) -> AsyncIterator[Browserless]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        client = Browserless(http)
        if name is not None:
            assert (await client.log_in(name)).status_code == 303
        yield client


@asynccontextmanager
async def waiting_card(server: Server) -> AsyncIterator[tuple[Widget, str]]:
    """A visitor who asked for a refund above 100, and the id of the card waiting on the team."""
    async with widget(server) as visitor:
        await visitor.hello()
        await visitor.say("refund 250 on order 1002")
        yield visitor, (await visitor.card("waiting"))["card_id"]


async def refused_rows(server: Server, card_id: str) -> list[tuple[str, str]]:
    rows = await server.engine.audit.rows(card_id=card_id, status="refused")
    return [(row["decided_by"], row["error"]) for row in rows]


async def test_login_gives_a_strict_http_only_cookie_and_logout_ends_it(server: Server) -> None:
    async with teammate(server) as lena:
        first = await lena.http.get("/dashboard")
        assert (first.status_code, first.headers["location"]) == (303, "/dashboard/login")

        wrong = await lena.log_in("lena", "not the password")
        assert wrong.status_code == 401
        assert "Wrong name or password." in wrong.text
        assert "signoff_dashboard" not in lena.http.cookies

        good = await lena.log_in("lena")
        assert (good.status_code, good.headers["location"]) == (303, "/dashboard")
        cookie = next(
            c for c in good.headers.get_list("set-cookie") if c.startswith("signoff_dashboard=")
        )
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "path=/dashboard", "samesite=strict", "max-age=43200"} <= flags
        assert "secure" not in flags  # plain http here; https requests get Secure
        home = await lena.page("/dashboard")
        assert home.status_code == 200
        assert "lena" in home.text and "support-lead" in home.text
        assert home.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in home.headers["content-security-policy"]
        assert home.headers["x-frame-options"] == "DENY"
        stolen = lena.http.cookies["signoff_dashboard"]

        no_token = await lena.http.post("/dashboard/logout", data={})
        assert no_token.status_code == 403
        assert (await lena.http.get("/dashboard")).status_code == 200  # still logged in

        out = await lena.http.post("/dashboard/logout", data={"csrf": lena.csrf})
        assert (out.status_code, out.headers["location"]) == (303, "/dashboard/login")
        assert (await lena.http.get("/dashboard")).status_code == 303
    # The login is gone from the store: its old cookie opens nothing.
    async with httpx.AsyncClient(
        base_url=server.url, cookies={"signoff_dashboard": stolen}
    ) as replay:
        assert (await replay.get("/dashboard")).status_code == 303


async def test_the_login_form_is_refused_without_its_token_or_from_another_site(
    server: Server,
) -> None:
    async with teammate(server) as lena:
        await lena.page("/dashboard/login")
        form = {"name": "lena", "password": PASSWORD}
        tokenless = await lena.http.post("/dashboard/login", data=form)
        assert tokenless.status_code == 403
        assert "Login form refused" in tokenless.text
        forged = await lena.http.post("/dashboard/login", data={**form, "csrf": "x" + lena.csrf})
        assert forged.status_code == 403
        foreign = await lena.http.post(
            "/dashboard/login", data={**form, "csrf": lena.csrf}, headers=FOREIGN
        )
        assert foreign.status_code == 403
        assert "signoff_dashboard" not in lena.http.cookies
    async with teammate(server) as other:  # a token without the cookie it was issued with
        await other.page("/dashboard/login")
        token = other.csrf
    async with teammate(server) as lena:
        pair = await lena.http.post("/dashboard/login", data={**form, "csrf": token})
        assert pair.status_code == 403
        extra = await lena.http.post("/dashboard/login", data={**form, "admin": "1"})
        assert (extra.status_code, "unexpected fields: admin" in extra.text) == (400, True)


async def test_failed_logins_are_throttled_per_name_and_address(server: Server) -> None:
    async with teammate(server) as guesser:
        for _ in range(5):
            assert (await guesser.log_in("lena", "guess-guess")).status_code == 401
        throttled = await guesser.log_in("lena")
        assert throttled.status_code == 429
        assert "Too many failed logins" in throttled.text
        assert (await guesser.log_in("omar")).status_code == 303


async def test_one_account_from_many_addresses_is_throttled_across_them(server: Server) -> None:
    """Addresses rotated through X-Forwarded-For (trusted from 127.0.0.1, as from a proxy):
    each stays under its own limit, and the account's limit holds them all."""
    async with teammate(server) as guesser:
        for i in range(logins.ACCOUNT_TRIES):
            guesser.http.headers["X-Forwarded-For"] = f"203.0.113.{i}"
            assert (await guesser.log_in("lena", "guess-guess")).status_code == 401
        guesser.http.headers["X-Forwarded-For"] = "198.51.100.7"
        throttled = await guesser.log_in("lena")  # the right password, too late
        assert throttled.status_code == 429
        assert "signoff_dashboard" not in guesser.http.cookies
        assert (await guesser.log_in("omar")).status_code == 303  # other accounts are open


async def test_many_accounts_from_one_address_are_throttled_together(server: Server) -> None:
    """One password sprayed over many names: each name under its own limit, the address's
    limit holds them all."""
    async with teammate(server) as guesser:
        for i in range(logins.ADDRESS_TRIES):
            assert (await guesser.log_in(f"guess-{i}", "Summer2024!")).status_code == 401
        assert (await guesser.log_in("lena")).status_code == 429
    async with teammate(server) as elsewhere:
        elsewhere.http.headers["X-Forwarded-For"] = "198.51.100.7"
        assert (await elsewhere.log_in("lena")).status_code == 303


async def test_parallel_guesses_are_held_to_the_same_few(server: Server) -> None:
    async with teammate(server) as guesser:
        await guesser.page("/dashboard/login")
        form = {"name": "lena", "password": "guess-guess", "csrf": guesser.csrf}
        answers = await asyncio.gather(
            *(guesser.http.post("/dashboard/login", data=form) for _ in range(20))
        )
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [401] * 5 + [429] * 15


async def test_decision_posts_refused_at_the_door_change_nothing_and_are_audited(
    server: Server,
) -> None:
    async with waiting_card(server) as (visitor, card_id):
        async with teammate(server) as anonymous:
            nobody = await anonymous.decide(card_id, csrf=None)
            assert nobody.status_code == 403
            assert "Log in to decide cards." in nobody.text
        async with teammate(server, "lena") as lena:
            page = await lena.page(f"/dashboard/cards/{card_id}")
            assert 'value="approve"' in page.text
            tokenless = await lena.decide(card_id, csrf=None)
            assert tokenless.status_code == 403
            assert "CSRF token is missing" in tokenless.text
            wrong = await lena.decide(card_id, csrf="not-the-token")
            assert wrong.status_code == 403
            foreign = await lena.decide(card_id, headers=FOREIGN)
            assert foreign.status_code == 403
            extra = await lena.decide(card_id, amount="25")
            assert (extra.status_code, "Unexpected fields: amount." in extra.text) == (400, True)
            bad_verdict = await lena.decide(card_id, verdict="maybe")
            assert bad_verdict.status_code == 400
            too_long = await lena.decide(card_id, reason="x" * 501)
            assert too_long.status_code == 400
            oversized = await lena.decide(card_id, reason="x" * 9000)
            assert oversized.status_code == 413

            stored = await server.engine.store.get_card(card_id)
            assert (stored.status, stored.approvals) == ("waiting", [])
            assert await refused_rows(server, card_id) == [
                ("dashboard:unauthenticated", "dashboard: log in to decide cards"),
                (
                    "teammate:lena",
                    "dashboard: the form's CSRF token is missing or not this login's; "
                    "reload the card",
                ),
                (
                    "teammate:lena",
                    "dashboard: the form's CSRF token is missing or not this login's; "
                    "reload the card",
                ),
                ("teammate:lena", "dashboard: the form was posted from another site"),
                ("teammate:lena", "dashboard: unexpected fields: amount"),
                ("teammate:lena", "dashboard: verdict or level is not valid"),
                ("teammate:lena", "dashboard: the reason is longer than 500 characters"),
                ("teammate:lena", "dashboard: the form is larger than 8192 bytes"),
            ]

            approved = await lena.decide(card_id, reason="receipt checked")
            assert approved.status_code == 200
            assert "Approved. The calls run now, exactly as shown." in approved.text
        await visitor.update(card_id, "done")
    statuses = [row["status"] for row in await server.engine.audit.rows(action="refund")]
    assert statuses.count("success") == 1


async def test_a_teammate_without_the_role_gets_no_buttons_and_a_forged_post_is_refused(
    server: Server,
) -> None:
    async with waiting_card(server) as (_visitor, card_id):
        async with teammate(server, "fred") as fred:
            listed = await fred.page("/dashboard")
            assert card_id in listed.text and "yours to decide" not in listed.text
            page = await fred.page(f"/dashboard/cards/{card_id}")
            assert page.status_code == 200
            assert 'value="approve"' not in page.text and 'value="reject"' not in page.text
            assert "Level 1 needs the role support-lead, which you do not have." in page.text
            forged = await fred.decide(card_id)  # a valid login and token, the wrong role
            assert forged.status_code == 403
            assert "You may not decide this card: level 1 needs the role" in forged.text
        stored = await server.engine.store.get_card(card_id)
        assert (stored.status, stored.approvals) == ("waiting", [])
        assert await refused_rows(server, card_id) == [
            (
                "teammate:fred",
                "dashboard: level 1 needs the role support-lead, which you do not have",
            )
        ]


async def test_a_card_already_decided_says_so_and_changes_nothing(server: Server) -> None:
    async with waiting_card(server) as (_visitor, card_id):
        async with teammate(server, "lena") as lena, teammate(server, "omar") as omar:
            await lena.page(f"/dashboard/cards/{card_id}")
            await omar.page(f"/dashboard/cards/{card_id}")
            stale_level = await omar.decide(card_id, level="2")
            assert stale_level.status_code == 409
            rejected = await lena.decide(card_id, verdict="reject", headers={"HX-Request": "true"})
            assert rejected.status_code == 200
            assert rejected.text.lstrip().startswith('<section id="decision"')  # htmx fragment
            assert "Rejected. Nothing runs" in rejected.text
            late = await omar.decide(card_id)
            assert late.status_code == 409
            assert "Already decided: this card is already" in late.text
            assert "Nothing was changed." in late.text
            assert 'value="approve"' not in late.text
        stored = await server.engine.store.get_card(card_id)
        assert (stored.status, stored.decided_by) == ("rejected", "teammate:lena")
        statuses = ["pending_confirmation", "rejected"]
        assert await settled_statuses(server, "refund", statuses) == statuses


async def test_an_ended_login_or_a_disabled_teammate_decides_nothing(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with waiting_card(server) as (_visitor, card_id):
        monkeypatch.setattr(logins, "LOGIN_TTL", 0.5)
        async with teammate(server, "lena") as lena:
            await lena.page(f"/dashboard/cards/{card_id}")
            await asyncio.sleep(0.7)
            assert (await lena.http.get("/dashboard")).status_code == 303
            live = await lena.http.get("/dashboard/cards", headers={"HX-Request": "true"})
            assert (live.status_code, live.headers["hx-redirect"]) == (401, "/dashboard/login")
            assert (await lena.decide(card_id)).status_code == 403
        monkeypatch.undo()

        async with teammate(server, "omar") as omar:
            await omar.page(f"/dashboard/cards/{card_id}")
            async with server.app.state.runtime.accounts.engine.begin() as conn:
                await conn.execute(
                    update(teammates).where(teammates.c.name == "omar").values(disabled=True)
                )
            assert (await omar.http.get("/dashboard")).status_code == 303
            assert (await omar.decide(card_id)).status_code == 403
        stored = await server.engine.store.get_card(card_id)
        assert (stored.status, stored.approvals) == ("waiting", [])
        assert [by for by, _ in await refused_rows(server, card_id)] == [
            "dashboard:unauthenticated",
            "dashboard:unauthenticated",
        ]


async def test_a_new_password_ends_the_logins_made_before_it(server: Server) -> None:
    async with waiting_card(server) as (_visitor, card_id), teammate(server, "lena") as lena:
        await lena.page(f"/dashboard/cards/{card_id}")
        accounts = server.app.state.runtime.accounts
        assert await accounts.set_password("lena", "a brand new passphrase")
        assert (await lena.http.get("/dashboard")).status_code == 303
        assert (await lena.decide(card_id)).status_code == 403
        assert (await lena.log_in("lena", "a brand new passphrase")).status_code == 303
        assert (await lena.http.get("/dashboard")).status_code == 200
    assert (await server.engine.store.get_card(card_id)).status == "waiting"


async def test_the_live_list_is_answered_with_204_while_it_is_unchanged(server: Server) -> None:
    async with teammate(server, "lena") as lena:
        first = await lena.http.get("/dashboard/cards")
        version = re.search(r"seen=(\w+)", first.text).group(1)  # type: ignore[union-attr]
        assert "No card waits for the team." in first.text
        same = await lena.http.get(f"/dashboard/cards?seen={version}")
        assert (same.status_code, same.text) == (204, "")
        async with waiting_card(server) as (_, card_id):
            changed = await lena.http.get(f"/dashboard/cards?seen={version}")
            assert changed.status_code == 200
            assert card_id in changed.text
            assert "1 of 1 · support-lead" in changed.text


async def test_the_demo_prints_a_teammate_who_can_log_in(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}

    async def start() -> tuple[asyncio.subprocess.Process, int, str]:
        port = free_port()
        demo = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "signoff.cli", "demo", "--port", str(port),
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert demo.stdout is not None
        await asyncio.wait_for(demo.stdout.readline(), 20)
        line = (await asyncio.wait_for(demo.stdout.readline(), 20)).decode()
        found = re.fullmatch(
            rf"dashboard: http://127\.0\.0\.1:{port}/dashboard \(user lead, password (\S+)\)\n",
            line,
        )
        assert found, line
        return demo, port, found.group(1)

    async def log_in(port: int, password: str) -> int:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(100):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            lead = Browserless(http)
            status = (await lead.log_in("lead", password)).status_code
            if status == 303:
                home = (await http.get("/dashboard")).text
                assert 'lead <span class="roles">(support-lead)</span>' in home
            return status

    first, port, password = await start()
    try:
        assert await log_in(port, password) == 303
    finally:
        first.terminate()
        await first.wait()
    second, port, new_password = await start()  # each start has a new password
    try:
        assert new_password != password
        assert await log_in(port, password) == 401
        assert await log_in(port, new_password) == 303
    finally:
        second.terminate()
        await second.wait()


async def test_the_health_check_fails_while_the_audit_database_is_unreachable(
    postgres_url: str, tmp_path: Any
) -> None:
    """Every turn writes audit rows, so an instance whose database is down is not healthy;
    the body says which part is down and keeps its address out."""
    database = make_url(postgres_url).database
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    async with (
        running(demo_app(), settings(tmp_path, audit=postgres_url)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        try:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
            await asyncio.sleep(HEALTH_TTL)  # past the answer found before
            down = await http.get("/healthz")
            assert down.status_code == 503
            assert down.json() == {"status": "unavailable", "unavailable": ["audit"]}
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await asyncio.sleep(HEALTH_TTL)
        assert (await http.get("/healthz")).json() == {"status": "ok"}
    await admin.close()


async def test_an_unreachable_database_is_a_503_and_then_service_resumes(
    postgres_url: str, tmp_path: Any
) -> None:
    """The teammates live in the audit database; while it refuses connections the
    dashboard and the API say so (503) and change nothing, and carry on once it is back."""
    database = make_url(postgres_url).database
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    async with running(demo_app(), settings(tmp_path, audit=postgres_url)) as server:
        accounts = server.app.state.runtime.accounts
        await accounts.create_teammate("lena", PASSWORD, ["support-lead"])
        key = await accounts.create_key("desk", ["support-lead"])
        async with waiting_card(server) as (visitor, card_id), teammate(server, "lena") as lena:
            await lena.page(f"/dashboard/cards/{card_id}")
            try:
                await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    database,
                )
                assert (await lena.http.get("/dashboard")).status_code == 503
                assert (await lena.decide(card_id)).status_code == 503
                answer = await approve_over_api(server.url, card_id, key)
                assert answer.status_code == 503
            finally:
                await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            assert (await server.engine.store.get_card(card_id)).status == "waiting"
            assert (await lena.decide(card_id)).status_code == 200
            await visitor.update(card_id, "done")
    await admin.close()


async def test_the_decision_part_is_polled_only_while_the_card_moves_on_without_you(
    server: Server,
) -> None:
    async with waiting_card(server) as (visitor, card_id):
        path = f"/dashboard/cards/{card_id}/decision"
        async with teammate(server) as stranger:
            assert (await stranger.http.get(path)).status_code == 303  # to the login
        async with teammate(server, "fred") as fred, teammate(server, "lena") as lena:
            # Not fred's level: his view follows the card. Lena's has her form: left alone.
            assert "hx-trigger" in (await fred.page(path)).text
            assert "hx-trigger" not in (await lena.page(path)).text
            assert (await lena.decide(card_id)).status_code == 200
            await visitor.update(card_id, "done")
            done = await fred.page(path)
            assert 'data-status="done"' in done.text and "hx-trigger" not in done.text
            missing = await fred.http.get("/dashboard/cards/card_nope/decision")
            assert missing.status_code == 404


async def test_a_teammate_scoped_to_another_site_neither_sees_nor_decides_the_card(
    server: Server,
) -> None:
    accounts = server.app.state.runtime.accounts
    await accounts.create_teammate("bo", PASSWORD, ["support-lead"], sites=["blog"])
    async with waiting_card(server) as (_visitor, card_id), teammate(server, "bo") as bo:
        assert card_id not in (await bo.page("/dashboard")).text
        assert (await bo.page(f"/dashboard/cards/{card_id}")).status_code == 404
        # A decision posted anyway finds no such card: nothing about it is told.
        refused = await bo.decide(card_id)
        assert refused.status_code == 404 and "demo" not in refused.text
    stored = await server.engine.store.get_card(card_id)
    assert (stored.status, stored.approvals) == ("waiting", [])
