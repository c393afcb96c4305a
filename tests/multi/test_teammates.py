"""Teammates deciding on one instance a card whose visitor is on another.

Accounts are made with the ``signoff users`` and ``keys`` commands against the shared
PostgreSQL database; dashboard logins live in Redis, so a login made on one instance
holds on the other.
"""

from __future__ import annotations

import asyncio
import sys

import httpx

from tests.integration.test_dashboard import PASSWORD, Browserless
from tests.multi.conftest import ROOT, Cluster, eventually
from tests.support import approve_over_api, widget


async def signoff_command(cluster: Cluster, *args: str, stdin: str = "") -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "signoff.cli",
        *args,
        env=cluster.env,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode())
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def test_a_chain_is_decided_across_instances_by_dashboard_and_api(
    cluster: Cluster,
) -> None:
    await signoff_command(
        cluster, "users", "create", "lena", "--role", "support-lead", "--password-stdin",
        stdin=PASSWORD,
    )  # fmt: skip
    key = await signoff_command(cluster, "keys", "create", "payouts", "--role", "finance")
    a = await cluster.start()
    b = await cluster.start()
    async with widget(a) as visitor:  # type: ignore[arg-type]
        await visitor.hello()
        await visitor.say("refund 250")
        card = await visitor.card("waiting")

        # Logged in on A; the same login decides level 1 on B.
        async with httpx.AsyncClient(base_url=a.url) as on_a:
            lena = Browserless(on_a)
            assert (await lena.log_in("lena")).status_code == 303
            await lena.page(f"/dashboard/cards/{card['card_id']}")
            cookies = dict(on_a.cookies)
        async with httpx.AsyncClient(base_url=b.url, cookies=cookies) as on_b:
            lena.http = on_b
            decided = await lena.decide(card["card_id"])
            assert decided.status_code == 200, decided.text
        moved = await visitor.update(card["card_id"], "waiting")
        assert (moved["level"], moved["role"]) == (2, "finance")

        # Level 2 through the API on B; the visitor, on A, sees the card run.
        answer = await approve_over_api(b.url, card["card_id"], key)
        assert answer.status_code == 200, answer.text
        approval = answer.json()["card"]["approval"]
        assert (approval["level"], approval["by"]) == (2, "teammate:key:payouts")
        await visitor.update(card["card_id"], "done")
        await visitor.bot_says("refunded")
    await eventually(lambda: cluster.runs() == ["refund 250 by teammate:key:payouts"])
    assert [s for action, s in await cluster.audit() if action == "refund"] == [
        "pending_confirmation",  # opened on level 1
        "pending_confirmation",  # level 1 approved
        "success",
    ]


async def test_failed_logins_are_counted_across_instances(cluster: Cluster) -> None:
    await signoff_command(
        cluster, "users", "create", "lena", "--role", "support-lead", "--password-stdin",
        stdin=PASSWORD,
    )  # fmt: skip
    instances = [await cluster.start(), await cluster.start()]
    codes = []
    for n in range(6):  # alternating instances, as a balancer would send them
        async with httpx.AsyncClient(base_url=instances[n % 2].url) as http:
            codes.append((await Browserless(http).log_in("lena", "guess-guess")).status_code)
    assert codes == [401] * 5 + [429]
