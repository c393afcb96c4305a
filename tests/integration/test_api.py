"""The REST API over real HTTP: API keys, deciding cards, user tokens, key management.

Every answer is checked against the OpenAPI document the server serves, so the document
cannot drift from what the API sends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from signoff.config import Site
from signoff.core.frames import ProtocolError
from signoff.core.teammates import Channel, Teammate, Verdict
from signoff.demo import demo_app
from signoff.engine.records import DOOR_REFUSALS_BURST
from signoff.web.api import MAX_BODY_BYTES, MAX_REASON_CHARS, openapi_document
from tests.integration.test_team import chain_app
from tests.support import Server, Widget, audit_statuses, running, settings, widget

ADMIN_KEY = "bootstrap-admin-key-0123456789abcdef"
ESCALATED = "refund 250 on order 1002"  # over 100: waits on the role support-lead


class Api:
    """An HTTP client for /api/v1 that holds every answer to the OpenAPI document."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.document = openapi_document()

    async def call(
        self,
        method: str,
        template: str,
        key: str | None = None,
        body: Any = None,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | str | None = None,
        **path: str,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        response = await self.http.request(
            method,
            "/api/v1" + template.format(**path),
            json=body,
            content=content,
            params=params,
            headers=sent,
        )
        self.conforms(response, method, template)
        return response

    def conforms(self, response: httpx.Response, method: str, template: str) -> None:
        answers = self.document["paths"]["/api/v1" + template][method.lower()]["responses"]
        assert str(response.status_code) in answers, (response.status_code, response.text)
        media = response.headers["content-type"].partition(";")[0]
        content = answers[str(response.status_code)]["content"]
        assert media in content, (response.status_code, media)
        if media != "application/json":
            return
        schema = content["application/json"]["schema"]
        root = {**schema, "components": self.document["components"]}
        Draft202012Validator(root).validate(response.json())

    async def resume(self, card_id: str, key: str | None, **body: Any) -> httpx.Response:
        return await self.call("POST", "/cards/{card_id}/resume", key, body, card_id=card_id)


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert body["success"] is False
    return str(body["error"]["code"])


async def make_key(server: Server, name: str, *roles: str) -> str:
    key: str = await server.app.state.runtime.accounts.create_key(name, list(roles))
    return key


@pytest.fixture
async def demo(tmp_path: Any, each_store: str) -> AsyncIterator[Server]:
    async with running(demo_app(), settings(tmp_path, admin_key=ADMIN_KEY)) as server:
        yield server


@pytest.fixture
async def api(demo: Server) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=demo.url) as http:
        yield Api(http)


async def escalate(w: Widget, text: str = ESCALATED) -> dict[str, Any]:
    await w.hello()
    await w.say(text)
    return await w.card("waiting")


async def test_a_lead_approves_through_the_api_and_the_bot_goes_on(demo: Server, api: Api) -> None:
    lead = await make_key(demo, "refund-desk", "support-lead")
    async with widget(demo) as w:
        card = await escalate(w)
        answer = await api.resume(card["card_id"], lead, decision="approve", reason="regular")
        assert answer.status_code == 200
        shown = answer.json()["card"]
        assert (shown["card_id"], shown["status"], shown["decided_by"]) == (
            card["card_id"],
            "approved",
            "teammate:key:refund-desk",
        )
        approval = shown["approval"]
        assert approval == shown["approvals"][-1]
        assert {k: approval[k] for k in ("level", "decision", "by", "channel", "reason")} == {
            "level": 1,
            "decision": "approve",
            "by": "teammate:key:refund-desk",
            "channel": "api",
            "reason": "regular",
        }
        assert approval["timestamp"].endswith("Z")
        await w.update(card["card_id"], "done")
        await w.bot_says("Refunded $250.00 on order #1002.")
    assert await audit_statuses(demo, "refund") == ["pending_confirmation", "success"]
    [ran] = await demo.engine.audit.rows(action="refund", status="success")
    assert ran["decided_by"] == "teammate:key:refund-desk"


async def test_a_lead_rejects_through_the_api_and_nothing_runs(demo: Server, api: Api) -> None:
    lead = await make_key(demo, "refund-desk", "support-lead")
    async with widget(demo) as w:
        card = await escalate(w)
        answer = await api.resume(card["card_id"], lead, decision="reject", reason="too much")
        assert answer.status_code == 200
        assert (answer.json()["card"]["status"], answer.json()["card"]["reason"]) == (
            "rejected",
            "too much",
        )
        assert answer.json()["card"]["approval"]["decision"] == "reject"
        await w.update(card["card_id"], "rejected")
        await w.bot_says("Okay, I did not refund: a teammate rejected it.")
        again = await api.resume(card["card_id"], lead, decision="approve")
        assert (again.status_code, error_code(again)) == (409, "already_decided")
    assert await audit_statuses(demo, "refund") == ["pending_confirmation", "rejected"]


async def test_a_two_level_chain_needs_both_roles_in_order(each_store: str, tmp_path: Any) -> None:
    runs: list[dict[str, Any]] = []
    async with (
        running(chain_app(runs), settings(tmp_path)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
        widget(server) as w,
    ):
        api = Api(http)
        lead = await make_key(server, "lead-bot", "support-lead")
        finance = await make_key(server, "finance-bot", "finance")
        both = await make_key(server, "both-bot", "support-lead", "finance")
        await w.hello()
        await w.say("refund 250")
        card = await w.card("waiting")

        early = await api.resume(card["card_id"], finance, decision="approve")
        assert (early.status_code, error_code(early)) == (403, "forbidden")
        first = await api.resume(card["card_id"], both, decision="approve")
        assert first.json()["card"]["status"] == "waiting"
        assert (first.json()["card"]["level"], first.json()["card"]["role"]) == (2, "finance")
        assert first.json()["card"]["approval"]["level"] == 1
        twice = await api.resume(card["card_id"], both, decision="approve")
        assert (twice.status_code, error_code(twice)) == (403, "forbidden")
        assert "earlier level" in twice.json()["error"]["message"]
        wrong = await api.resume(card["card_id"], lead, decision="approve")
        assert wrong.status_code == 403
        assert runs == []

        last = await api.resume(card["card_id"], finance, decision="approve")
        assert last.json()["card"]["status"] == "approved"
        assert [a["by"] for a in last.json()["card"]["approvals"]] == [
            "teammate:key:both-bot",
            "teammate:key:finance-bot",
        ]
        await w.update(card["card_id"], "done")
    assert runs == [{"amount": "250", "decided_by": "teammate:key:finance-bot"}]
    refused = await server.engine.audit.rows(action="refund", status="refused")
    assert [r["decided_by"] for r in refused] == [
        "teammate:key:finance-bot",
        "teammate:key:both-bot",
        "teammate:key:lead-bot",
    ]


LONG_REASON = "x" * (MAX_REASON_CHARS + 1)
JSON = {"Content-Type": "application/json"}
# (what is sent, the answer's status and code, who the refused attempt is audited as)
REFUSALS: dict[str, tuple[dict[str, Any], int, str, str]] = {
    "no key": ({"key": None, "body": {"decision": "approve"}}, 401, "unauthorized", "api"),
    "unknown key": (
        {"key": "sok_0000_nope", "body": {"decision": "approve"}},
        401,
        "unauthorized",
        "api",
    ),
    "not bearer": (
        {
            "key": None,
            "headers": {"Authorization": f"Basic {ADMIN_KEY}"},
            "body": {"decision": "approve"},
        },
        401,
        "unauthorized",
        "api",
    ),
    "extra field": ({"body": {"decision": "approve", "amount": 1}}, 422, "invalid_body", "key"),
    "visitor's word": ({"body": {"decision": "confirm"}}, 422, "invalid_body", "key"),
    "no decision": ({"body": {"reason": "ok"}}, 422, "invalid_body", "key"),
    "not an object": ({"body": ["approve"]}, 422, "invalid_body", "key"),
    "reason as number": (
        {"body": {"decision": "approve", "reason": 5}},
        422,
        "invalid_body",
        "key",
    ),
    "long reason": (
        {"body": {"decision": "approve", "reason": LONG_REASON}},
        422,
        "invalid_body",
        "key",
    ),
    "not JSON": ({"content": "decision=approve", "headers": JSON}, 400, "invalid_json", "key"),
    "repeated key": (
        {"content": '{"decision": "reject", "decision": "approve"}'},
        422,
        "invalid_body",
        "key",
    ),
    "nested too deeply": (
        {"content": '{"decision": "approve", "reason": ' + "[" * 8000 + "]" * 8000 + "}"},
        422,
        "invalid_body",
        "key",
    ),
    "form body": (
        {
            "content": "decision=approve",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        415,
        "unsupported_media_type",
        "key",
    ),
    "too large": (
        {"content": json.dumps({"decision": "approve", "pad": "x" * MAX_BODY_BYTES})},
        413,
        "too_large",
        "key",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
async def test_refused_at_the_door_nothing_runs_and_the_attempt_is_audited(
    case: str, demo: Server, api: Api
) -> None:
    sent, status, code, by = REFUSALS[case]
    lead = await make_key(demo, "refund-desk", "support-lead")
    sent = {"key": lead, "headers": JSON if "content" in sent else None, **sent}
    async with widget(demo) as w:
        card = await escalate(w)
        answer = await api.call("POST", "/cards/{card_id}/resume", card_id=card["card_id"], **sent)
        assert answer.status_code == status, answer.text
        assert error_code(answer) == code
        if status == 401:
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        # The visitor sees nothing happen.
        assert [f for f in await w.quiet(0.2) if f["type"] == "card.update"] == []
    stored = await demo.engine.store.get_card(card["card_id"])
    assert (stored.status, stored.approvals) == ("waiting", [])
    [refused] = await demo.engine.audit.rows(action="refund", status="refused")
    expected = "api:unauthenticated" if by == "api" else "teammate:key:refund-desk"
    assert refused["decided_by"] == expected
    assert refused["error"].startswith("api: ")

    # The card is still there to decide, properly.
    answer = await api.resume(card["card_id"], lead, decision="approve")
    assert answer.json()["card"]["status"] == "approved"


async def test_a_flood_of_unauthenticated_attempts_cannot_bury_the_audit_log(
    demo: Server, api: Api
) -> None:
    async with widget(demo) as w:
        card = await escalate(w)
        answers = await asyncio.gather(
            *(api.resume(card["card_id"], "sok_forged_key", decision="approve") for _ in range(60))
        )
    assert {answer.status_code for answer in answers} == {401}
    refused = await demo.engine.audit.rows(action="refund", status="refused")
    # The burst, and at most what the bucket refills while the flood lasts.
    assert DOOR_REFUSALS_BURST <= len(refused) <= DOOR_REFUSALS_BURST + 2
    assert (await demo.engine.store.get_card(card["card_id"])).status == "waiting"


async def test_the_wrong_role_and_unknown_cards(demo: Server, api: Api) -> None:
    finance = await make_key(demo, "finance-bot", "finance")
    async with widget(demo) as w, widget(demo) as visitor:
        card = await escalate(w)
        answer = await api.resume(card["card_id"], finance, decision="approve")
        assert (answer.status_code, error_code(answer)) == (403, "forbidden")
        assert "support-lead" in answer.json()["error"]["message"]
        for missing in ("no-such-card", "..%2F..%2Fetc", "x" * 200):
            answer = await api.resume(missing, finance, decision="approve")
            assert (answer.status_code, error_code(answer)) == (404, "not_found")
        # A visitor's own card is not the team's to decide, nor said to exist.
        mine = await visitor.open_card("cancel order 1001")
        answer = await api.resume(mine["card_id"], finance, decision="approve")
        assert (answer.status_code, error_code(answer)) == (404, "not_found")
        assert (await demo.engine.store.get_card(mine["card_id"])).status == "pending"
    assert (await demo.engine.store.get_card(card["card_id"])).status == "waiting"
    refused = await demo.engine.audit.rows(status="refused")
    assert [(r["action"], r["decided_by"]) for r in refused] == [
        ("refund", "teammate:key:finance-bot"),
    ]


async def test_an_expired_card_answers_409_expired(each_store: str, tmp_path: Any) -> None:
    runs: list[dict[str, Any]] = []
    # No sweeper in time: the claim itself finds the card past its deadline.
    config = settings(tmp_path, sweep_interval=60.0)
    async with (
        running(chain_app(runs, timeout=0.3), config) as server,
        httpx.AsyncClient(base_url=server.url) as http,
        widget(server) as w,
    ):
        lead = await make_key(server, "lead-bot", "support-lead")
        await w.hello()
        await w.say("refund 250")
        card = await w.card("waiting")
        await asyncio.sleep(0.5)
        answer = await Api(http).resume(card["card_id"], lead, decision="approve")
        assert (answer.status_code, error_code(answer)) == (409, "expired")
        await w.update(card["card_id"], "expired")
    assert runs == []


async def test_dashboard_slack_and_api_racing_run_the_card_once(demo: Server, api: Api) -> None:
    keys = [await make_key(demo, f"lead-{i}", "support-lead") for i in range(4)]
    async with widget(demo) as w:
        card = await escalate(w)
        others = [
            Teammate("lena", frozenset({"support-lead"}), Channel.DASHBOARD),
            Teammate("sam", frozenset({"support-lead"}), Channel.SLACK),
        ]
        outcomes = await asyncio.gather(
            *(api.resume(card["card_id"], key, decision="approve") for key in keys),
            *(demo.engine.team_decide(card["card_id"], Verdict.APPROVE, t) for t in others),
            return_exceptions=True,
        )
        answers, decided = outcomes[: len(keys)], outcomes[len(keys) :]
        assert all(isinstance(a, httpx.Response) for a in answers)
        statuses = sorted(a.status_code for a in answers if isinstance(a, httpx.Response))
        lost = [o for o in decided if isinstance(o, ProtocolError)]
        assert all(o.code == "already_decided" for o in lost)
        assert statuses.count(200) + len(decided) - len(lost) == 1
        assert set(statuses) <= {200, 409}
        await w.update(card["card_id"], "done")
        await w.bot_says("Refunded")
    assert await audit_statuses(demo, "refund") == ["pending_confirmation", "success"]


async def test_reading_cards(demo: Server, api: Api) -> None:
    reader = await make_key(demo, "reader", "auditor")
    async with widget(demo) as w, widget(demo) as visitor:
        card = await escalate(w)
        mine = await visitor.open_card("cancel order 1001")
    waiting = await api.call("GET", "/cards", reader, params={"status": "waiting"})
    assert [c["card_id"] for c in waiting.json()["cards"]] == [card["card_id"]]
    assert waiting.json()["cards"][0]["actions"][0]["args"] == {"order_id": 1002, "amount": 250}
    done = await api.call("GET", "/cards", reader, params={"status": "done", "limit": "5"})
    assert done.json()["cards"] == []
    one = await api.call("GET", "/cards/{card_id}", reader, card_id=card["card_id"])
    assert (one.json()["card"]["status"], one.json()["card"]["role"]) == ("waiting", "support-lead")
    for params in ({"status": "sleeping"}, {"limit": "0"}, {"limit": "x"}, {"colour": "red"}):
        bad = await api.call("GET", "/cards", reader, params=params)
        assert (bad.status_code, error_code(bad)) == (422, "invalid_query"), params
    for card_id in (mine["card_id"], "nope"):  # a visitor's card is not shown to the team
        missing = await api.call("GET", "/cards/{card_id}", reader, card_id=card_id)
        assert missing.status_code == 404
    assert (await api.call("GET", "/cards")).status_code == 401


async def test_the_admin_key_manages_keys_and_signs_tokens_but_decides_nothing(
    demo: Server, api: Api
) -> None:
    created = await api.call(
        "POST", "/keys", ADMIN_KEY, {"name": "refund-desk", "roles": ["support-lead"]}
    )
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["key_id"]
    assert key.startswith(f"sok_{key_id}_")
    listed = await api.call("GET", "/keys", ADMIN_KEY)
    assert [(k["key_id"], k["name"], k["roles"]) for k in listed.json()["keys"]] == [
        (key_id, "refund-desk", ["support-lead"])
    ]
    assert key.split("_", 2)[2] not in listed.text
    # Decisions are signed with key names: one name, one key; "admin" is the bootstrap's.
    for name in ("refund-desk", "admin"):
        again = await api.call("POST", "/keys", ADMIN_KEY, {"name": name, "roles": ["finance"]})
        assert (again.status_code, error_code(again)) == (409, "conflict")
    # Named as teammates are: the name signs decisions (teammate:key:<name>).
    for name in ("refund desk", "desk\u202e", "", "x" * 65, "-desk"):
        odd = await api.call("POST", "/keys", ADMIN_KEY, {"name": name, "roles": ["finance"]})
        assert (odd.status_code, error_code(odd)) == (422, "invalid_body"), name
    token = await api.call("POST", "/user-tokens", ADMIN_KEY, {"user_id": "alice"})
    assert token.status_code == 200

    async with widget(demo) as w:
        card = await escalate(w)
        refused = await api.resume(card["card_id"], ADMIN_KEY, decision="approve")
        assert (refused.status_code, error_code(refused)) == (403, "forbidden")
        # The key it made can.
        answer = await api.resume(card["card_id"], key, decision="approve")
        assert answer.status_code == 200
        await w.update(card["card_id"], "done")
    [row] = await demo.engine.audit.rows(action="refund", status="refused")
    assert row["decided_by"] == "teammate:key:admin"

    # A key that is not admin manages nothing, and bad requests create nothing.
    answer = await api.call("POST", "/keys", key, {"name": "x", "roles": ["admin"]})
    assert (answer.status_code, error_code(answer)) == (403, "forbidden")
    for body in [
        {"name": "x", "roles": []},
        {"name": "x", "roles": ["Support Lead"]},
        {"name": "", "roles": ["finance"]},
        {"name": "x", "roles": "finance"},
        {"name": "x", "roles": ["finance"], "secret": "mine"},
    ]:
        answer = await api.call("POST", "/keys", ADMIN_KEY, body)
        assert (answer.status_code, error_code(answer)) == (422, "invalid_body"), body
    assert len((await api.call("GET", "/keys", ADMIN_KEY)).json()["keys"]) == 1

    revoked = await api.call("DELETE", "/keys/{key_id}", ADMIN_KEY, key_id=key_id)
    assert revoked.json() == {"success": True, "key_id": key_id, "revoked": True}
    assert (await api.call("GET", "/cards", key)).status_code == 401
    again = await api.call("DELETE", "/keys/{key_id}", ADMIN_KEY, key_id=key_id)
    assert again.status_code == 404
    [shown] = (await api.call("GET", "/keys", ADMIN_KEY)).json()["keys"]
    assert shown["revoked_at"] is not None


async def test_host_keys_sign_user_tokens_the_widget_accepts(demo: Server, api: Api) -> None:
    host = await make_key(demo, "shop-backend", "host")
    lead = await make_key(demo, "refund-desk", "support-lead")
    answer = await api.call(
        "POST", "/user-tokens", host, {"user_id": "alice", "ttl": 60, "site": "demo"}
    )
    assert answer.status_code == 200
    async with widget(demo) as w:
        welcome = await w.hello(user_token=answer.json()["user_token"])
        assert welcome["user_id"] == "alice"
    assert answer.json()["expires_at"].endswith("Z")

    not_host = await api.call("POST", "/user-tokens", lead, {"user_id": "alice"})
    assert not_host.status_code == 403
    not_admin = await api.call("POST", "/keys", host, {"name": "x", "roles": ["host"]})
    assert not_admin.status_code == 403
    for body in [
        {"user_id": "alice", "site": "elsewhere"},
        {"user_id": "alice", "ttl": 0},
        {"user_id": "alice", "ttl": 86400 * 30},
        {"user_id": "alice", "ttl": 3600.5},
        {"user_id": "alice", "ttl": "60"},
        {"user_id": ""},
        {"user_id": "anon_x"},
        {"user_id": "alice", "admin": True},
    ]:
        bad = await api.call("POST", "/user-tokens", host, body)
        assert (bad.status_code, error_code(bad)) == (422, "invalid_body"), body


async def test_a_key_scoped_to_a_site_sees_and_signs_for_that_site_only(
    tmp_path: Any, each_store: str
) -> None:
    sites = {
        "demo": Site("demo", ("http://127.0.0.1:*",)),
        "blog": Site("blog", ("http://127.0.0.1:*",)),
    }
    async with (
        running(demo_app(), settings(tmp_path, sites=sites)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        api = Api(http)
        accounts = server.app.state.runtime.accounts
        blog_lead = await accounts.create_key("blog-lead", ["support-lead"], ["blog"])
        blog_host = await accounts.create_key("blog-backend", ["host"], ["blog"])
        async with widget(server) as w:
            card = await escalate(w)  # on the demo site
            listed = await api.call("GET", "/cards", blog_lead)
            assert listed.json()["cards"] == []
            for answer in (
                await api.call("GET", "/cards/{card_id}", blog_lead, card_id=card["card_id"]),
                await api.resume(card["card_id"], blog_lead, decision="approve"),
            ):
                assert (answer.status_code, error_code(answer)) == (404, "not_found")
            assert (await server.engine.store.get_card(card["card_id"])).status == "waiting"

        # Its tokens are for its own site, named or not.
        token = await api.call("POST", "/user-tokens", blog_host, {"user_id": "alice"})
        assert token.status_code == 200
        other = await api.call(
            "POST", "/user-tokens", blog_host, {"user_id": "alice", "site": "demo"}
        )
        assert (other.status_code, error_code(other)) == (403, "forbidden")
        async with widget(server) as on_demo:
            refused = await on_demo.hello(site="demo", user_token=token.json()["user_token"])
            assert (refused["type"], refused["code"]) == ("error", "unauthorized")
        async with widget(server) as on_blog:
            welcome = await on_blog.hello(site="blog", user_token=token.json()["user_token"])
            assert (welcome["type"], welcome["user_id"]) == ("welcome", "alice")


async def test_a_key_grants_and_manages_only_roles_it_holds_on_sites_it_covers(
    tmp_path: Any, each_store: str, caplog: pytest.LogCaptureFixture
) -> None:
    sites = {name: Site(name, ("http://127.0.0.1:*",)) for name in ("demo", "blog")}
    async with (
        running(demo_app(), settings(tmp_path, sites=sites)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        api = Api(http)
        accounts = server.app.state.runtime.accounts
        blog_admin = await accounts.create_key("blog-admin", ["admin", "host"], ["blog"])
        demo_lead = await accounts.create_key("demo-lead", ["support-lead"], ["demo"])
        any_host = await accounts.create_key("any-host", ["host"])
        blog_lead = await accounts.create_key("blog-lead", ["support-lead"], ["blog"])
        for body, says in [
            ({"roles": ["admin", "host"]}, "cannot grant every site"),  # no sites: every site
            ({"roles": ["host"], "sites": ["demo"]}, "site demo"),
            ({"roles": ["host"], "sites": ["blog", "demo"]}, "site demo"),
            ({"roles": ["support-lead"], "sites": ["blog"]}, "role support-lead"),
            ({"roles": ["metrics", "host"], "sites": ["blog"]}, "role metrics"),
        ]:
            answer = await api.call("POST", "/keys", blog_admin, {"name": "escape", **body})
            assert (answer.status_code, error_code(answer)) == (403, "forbidden"), body
            assert says in answer.json()["error"]["message"]
        refusals = [r.getMessage() for r in caplog.records if r.name == "signoff.api"]
        assert len([m for m in refusals if m.startswith("refused to create")]) == 5

        made = await api.call(
            "POST",
            "/keys",
            blog_admin,
            {"name": "blog-backend", "roles": ["host"], "sites": ["blog"]},
        )
        assert made.status_code == 201
        assert made.json()["created_by"] == "key:blog-admin"
        listed = await api.call("GET", "/keys", blog_admin)
        assert [(k["name"], k["created_by"]) for k in listed.json()["keys"]] == [
            ("blog-admin", None),
            ("blog-backend", "key:blog-admin"),
        ]
        all_keys = {k.name: k.key_id for k in await accounts.list_keys()}
        for name, key in [
            ("demo-lead", demo_lead),
            ("any-host", any_host),
            ("blog-lead", blog_lead),
        ]:
            refused = await api.call("DELETE", "/keys/{key_id}", blog_admin, key_id=all_keys[name])
            assert (refused.status_code, error_code(refused)) == (403, "forbidden"), name
            assert await accounts.authenticate_key(key) is not None  # still live
        revoked = await api.call(
            "DELETE", "/keys/{key_id}", blog_admin, key_id=made.json()["key_id"]
        )
        assert revoked.status_code == 200
        assert len(await accounts.list_keys()) == 5  # nothing else was made


async def test_keys_made_by_one_person_are_that_person_for_four_eyes(
    tmp_path: Any, each_store: str
) -> None:
    """An admin who mints a support-lead key and a finance key cannot sign off both levels
    of a card with them: both count as the admin, however many keys deep."""
    runs: list[dict[str, Any]] = []
    async with (
        running(chain_app(runs), settings(tmp_path, admin_key=ADMIN_KEY)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
        widget(server) as w,
    ):
        api = Api(http)

        async def mint(by: str, name: str, *roles: str) -> str:
            made = await api.call("POST", "/keys", by, {"name": name, "roles": list(roles)})
            assert made.status_code == 201, made.text
            return str(made.json()["key"])

        lead = await mint(ADMIN_KEY, "lead-bot", "support-lead")
        finance = await mint(ADMIN_KEY, "finance-bot", "finance")
        deputy = await mint(ADMIN_KEY, "deputy", "admin", "finance")
        deputys_finance = await mint(deputy, "deputy-finance", "finance")
        await w.hello()
        await w.say("refund 250")
        card = await w.card("waiting")
        first = await api.resume(card["card_id"], lead, decision="approve")
        assert first.json()["card"]["level"] == 2
        for key in (finance, deputy, deputys_finance):
            again = await api.resume(card["card_id"], key, decision="approve")
            assert (again.status_code, error_code(again)) == (403, "forbidden")
            assert "four eyes need two people" in again.json()["error"]["message"]
        assert runs == []

        # Another admin, made on the command line, is a person of their own.
        other_admin = await server.app.state.runtime.accounts.create_key(
            "other-admin", ["admin", "finance"]
        )
        others_finance = await mint(other_admin, "other-finance", "finance")
        last = await api.resume(card["card_id"], others_finance, decision="approve")
        assert last.json()["card"]["status"] == "approved"
        assert [(a["by"], a["principal"]) for a in last.json()["card"]["approvals"]] == [
            ("teammate:key:lead-bot", "teammate:key:admin"),
            ("teammate:key:other-finance", "teammate:key:other-admin"),
        ]
        await w.update(card["card_id"], "done")
    assert runs == [{"amount": "250", "decided_by": "teammate:key:other-finance"}]
    refused = await server.engine.audit.rows(action="refund", status="refused")
    assert [r["decided_by"] for r in refused] == [
        "teammate:key:finance-bot",
        "teammate:key:deputy",
        "teammate:key:deputy-finance",
    ]


async def test_unknown_routes_and_methods_answer_in_the_same_shape(demo: Server) -> None:
    async with httpx.AsyncClient(base_url=demo.url) as http:
        missing = await http.get("/api/v1/nothing")
        assert (missing.status_code, error_code(missing)) == (404, "not_found")
        # A path the API's own routes cannot match (a line break in an id) is JSON too.
        odd = await http.delete("/api/v1/keys/a%0Ab")
        assert (odd.status_code, error_code(odd)) == (404, "not_found")
        wrong = await http.put("/api/v1/cards")
        assert (wrong.status_code, error_code(wrong)) == (405, "method_not_allowed")
        assert "GET" in wrong.headers["allow"]
        # Allow lists every method of the path, whichever of its routes answers.
        keys = await http.delete("/api/v1/keys")
        assert (keys.status_code, error_code(keys)) == (405, "method_not_allowed")
        assert set(keys.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
        # And the OpenAPI document is also where tools look first.
        assert (await http.get("/openapi.json")).json() == (
            await http.get("/api/v1/openapi.json")
        ).json()


async def test_the_openapi_document_is_valid_and_lists_every_route(demo: Server) -> None:
    async with httpx.AsyncClient(base_url=demo.url) as http:
        answer = await http.get("/api/v1/openapi.json")  # no key needed
    assert answer.status_code == 200
    document = answer.json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    mount = next(r for r in demo.app.routes if getattr(r, "path", "") == "/api/v1")
    served = {
        (method.lower(), "/api/v1" + route.path)
        for route in mount.routes
        for method in route.methods - {"HEAD"}
    }
    documented = {(m, p) for p, operations in document["paths"].items() for m in operations}
    assert served == documented
    resume = document["paths"]["/api/v1/cards/{card_id}/resume"]["post"]
    assert {"200", "400", "401", "403", "404", "409", "413", "415", "422"} <= set(
        resume["responses"]
    )
    body = document["components"]["schemas"]["ResumeRequest"]
    assert body["additionalProperties"] is False
    assert document["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


async def test_keys_live_in_the_audit_database(audit_url: str, tmp_path: Any) -> None:
    """On SQLite and PostgreSQL: a key minted with the bootstrap key decides a card."""
    config = settings(tmp_path, audit=audit_url, admin_key=ADMIN_KEY)
    async with (
        running(demo_app(), config) as server,
        httpx.AsyncClient(base_url=server.url) as http,
        widget(server) as w,
    ):
        api = Api(http)
        created = await api.call(
            "POST", "/keys", ADMIN_KEY, {"name": "refund-desk", "roles": ["support-lead"]}
        )
        card = await escalate(w)
        answer = await api.resume(card["card_id"], created.json()["key"], decision="approve")
        assert answer.json()["card"]["decided_by"] == "teammate:key:refund-desk"
        await w.update(card["card_id"], "done")
        revoked = await api.call(
            "DELETE", "/keys/{key_id}", ADMIN_KEY, key_id=created.json()["key_id"]
        )
        assert revoked.status_code == 200
        assert (await api.call("GET", "/cards", created.json()["key"])).status_code == 401
