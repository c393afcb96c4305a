"""What every door (dashboard, API, socket) refuses before it reaches SQL or the store, on
each audit backend: PostgreSQL cannot store NUL at all, so there it would fail far inside."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from signoff.demo import demo_app, demo_site
from tests.integration.test_dashboard import PASSWORD, Browserless, waiting_card
from tests.support import Server, assert_origin_refused, running, settings, widget

ADMIN_KEY = "bootstrap-admin-key-0123456789abcdef"


@pytest.fixture
async def server(audit_url: str, tmp_path: Any) -> AsyncIterator[Server]:
    config = settings(tmp_path, audit=audit_url, admin_key=ADMIN_KEY)
    async with running(demo_app(), config) as server:
        await server.app.state.runtime.accounts.create_teammate("lena", PASSWORD, ["support-lead"])
        yield server


async def test_control_characters_are_refused_at_every_door_with_a_clear_answer(
    server: Server,
) -> None:
    lead = await server.app.state.runtime.accounts.create_key("desk", ["support-lead"])
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with (
        httpx.AsyncClient(base_url=server.url) as http,
        waiting_card(server) as (visitor, card_id),
    ):
        teammate = Browserless(http)
        for name in ("lena\x00", "le\x1bna", "le\nna"):
            answer = await teammate.log_in(name)
            assert answer.status_code == 400, name
            assert "control characters" in answer.text
        assert (await teammate.log_in("lena")).status_code == 303

        for path in (
            "/dashboard/conversations/conv%00x",
            "/dashboard/audit?action=refund%00",
            "/dashboard/audit?conversation=%07",
        ):
            answer = await teammate.page(path)
            assert answer.status_code in {400, 404}, path
            assert "Unavailable" not in answer.text
        await teammate.page(f"/dashboard/cards/{card_id}")
        refused = await teammate.decide(card_id, reason="fine\x00")
        assert refused.status_code == 400
        assert "control characters such as" in refused.text

        control = "control characters such as"
        for method, path, body, key, says in (
            ("GET", "/api/v1/audit?action=refund%00", None, ADMIN_KEY, control),
            ("GET", "/api/v1/audit?decided_by=teammate%3Alena%1b", None, ADMIN_KEY, control),
            ("POST", "/api/v1/keys", {"name": "desk\x00", "roles": ["host"]}, ADMIN_KEY, control),
            ("POST", "/api/v1/user-tokens", {"user_id": "al\x00ice"}, ADMIN_KEY, control),
            (
                "POST",
                "/api/v1/user-tokens",
                {"user_id": "a", "site": "demo\x00"},
                ADMIN_KEY,
                "site",
            ),
            (
                "POST",
                f"/api/v1/cards/{card_id}/resume",
                {"decision": "approve", "reason": "\x00"},
                lead,
                control,
            ),
        ):
            headers = {"Authorization": f"Bearer {key}"}
            answer = await http.request(method, path, json=body, headers=headers)
            assert answer.status_code == 422, (path, answer.text)
            assert says in answer.json()["error"]["message"]
        gone = await http.delete("/api/v1/keys/%00", headers=admin)
        assert gone.status_code == 404
        keys = await http.get("/api/v1/keys", headers=admin)
        assert [k["name"] for k in keys.json()["keys"]] == ["desk"]

        await visitor.send({"type": "message", "client_id": "nul", "text": "refund\x00 1"})
        error = await visitor.error("bad_frame")
        assert "control characters" in error["message"]
        assert (await server.engine.store.get_card(card_id)).status == "waiting"
        assert (await teammate.decide(card_id, reason="line one\nline two")).status_code == 200
        await visitor.update(card_id, "done")

    async with widget(server) as w:  # and the server goes on as before
        await w.hello()
        await w.say("list orders")
        await w.bot_says("1001")


async def test_the_demo_site_trusts_its_own_address_not_the_host_a_page_names(
    tmp_path: Any,
) -> None:
    """DNS rebinding: a page on a name its owner points at 127.0.0.1 sends that name as the
    Host and the Origin alike, so a rule that trusted the Host would let it in."""
    async with running(demo_app(), settings(tmp_path)) as server:
        server.app.state.runtime.sites["demo"] = demo_site("127.0.0.1", server.port)
        local = (server.url, f"http://localhost:{server.port}", "http://127.0.0.1:3000")
        for origin in local:
            async with widget(server, origin=origin) as w:
                assert (await w.hello())["type"] == "welcome", origin
        rebound = f"rebound.example:{server.port}"
        await assert_origin_refused(
            f"ws://{rebound}/ws", f"http://{rebound}", host="127.0.0.1", port=server.port
        )


def test_the_demo_site_names_the_address_it_listens_on() -> None:
    assert demo_site("127.0.0.1", 8000).origins[0] == "http://127.0.0.1:8000"
    assert demo_site("::1", 8000).origins[0] == "http://[::1]:8000"
    lan = demo_site("192.168.1.20", 8080)
    assert lan.allows("http://192.168.1.20:8080", host="192.168.1.20:8080")
    assert not lan.allows("http://rebound.example:8080", host="rebound.example:8080")
    assert not lan.allows("http://192.168.1.20:9999", host="192.168.1.20:9999")
