"""An OpenAI Agents SDK agent behind signoff's cards, driven by the SDK's own offline
ScriptedModel answering from what it is sent: its text streams, its calls become reads or
cards (the run interrupted before anything runs), and each outcome comes back to it as the
call's function_call_output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

from signoff import Signoff
from signoff.adapters.openai_agents import AgentsBot
from signoff.demo import DemoShop, register_shop
from tests.services import redis_prefix, redis_store_url
from tests.support import running, settings, widget

# Each test on each store, but the restart's, which needs a store that outlives a server.
each_store = pytest.mark.usefixtures("each_store")
set_tracing_disabled(True)  # no traces sent anywhere: the tests have no network

ADA = {"order_id": 1001, "customer": "Ada Lovelace", "total": 89.5}
RAN = {"wipe_everything": 0, "list_orders": 0}


class Script:
    """The model: answers each call from its input, and keeps the outcomes it was told."""

    def __init__(self) -> None:
        self.outcomes: list[dict[str, Any]] = []
        self.tools: list[list[str]] = []

    def answer(self, call: ModelCall) -> list[Any]:
        self.tools.append(sorted(t.name for t in call.tools))
        last = call.input[-1] if isinstance(call.input, list) else {"role": "user"}
        if last.get("type") == "function_call_output":
            outcome = json.loads(last["output"])
            self.outcomes.append(outcome)
            status = outcome.get("status")
            return [assistant_message("All done." if status == "ok" else f"Not done: {status}.")]
        said = next(i["content"] for i in reversed(call.input) if i.get("role") == "user")
        if said == "cancel 1001":
            return [
                assistant_message("Let me cancel that."),
                function_call("cancel_order", ADA, call_id="c1"),
            ]
        if said == "look 1001":
            return [function_call("get_order", {"order_id": 1001}, call_id="g1")]
        if said == "list":
            return [function_call("list_orders", {}, call_id="l1")]
        return [assistant_message("Hello.")]


def shop(script: Script) -> Signoff:
    model = ScriptedModel([ModelStep.respond(script.answer) for _ in range(20)])

    @function_tool
    def wipe_everything() -> str:
        """The agent's own tool, no action: never run around signoff."""
        RAN["wipe_everything"] += 1
        return "wiped"

    @function_tool(needs_approval=True)
    def list_orders() -> str:
        """The agent wants a person's OK for this one, though signoff's action is a read."""
        RAN["list_orders"] += 1
        return "never run by the agent"

    agent = Agent(name="shop", instructions="Serve the shop.", model=model)
    agent.tools = [wipe_everything, list_orders]
    app = Signoff()
    register_shop(app, DemoShop())
    app.use_bot(AgentsBot(agent, app.registry))
    return app


@each_store
async def test_a_confirmed_call_runs_once_and_a_declined_one_is_told(tmp_path: Path) -> None:
    script = Script()
    async with running(shop(script), settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("cancel 1001")
        end = await w.bot_says("Let me cancel that.")
        assert [f for f in w.frames if f.get("type") == "message.delta"]  # streamed
        assert end["text"] == "Let me cancel that."
        card = await w.card("pending")
        assert card["actions"][0]["args"] == ADA
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says("All done.")
        await w.say("cancel 1001")
        card = await w.card("pending")
        await w.decide(card, "cancel")
        await w.bot_says("Not done: declined.")
        await w.say("look 1001")  # a read: at once, no card
        await w.bot_says("All done.")
        assert len([f for f in w.frames if f["type"] == "card"]) == 2
    assert script.outcomes[0]["result"] == {"order_id": 1001, "status": "cancelled"}
    # The model is offered signoff's actions, and only those.
    assert "wipe_everything" not in script.tools[0] and "cancel_order" in script.tools[0]


@each_store
async def test_the_agents_own_approval_flag_gets_a_card_and_its_tools_never_run(
    tmp_path: Path,
) -> None:
    RAN.update(wipe_everything=0, list_orders=0)
    async with running(shop(Script()), settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("list")
        card = await w.card("pending")  # a read, but the agent wants it approved
        assert card["actions"][0]["action"] == "list_orders"
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says("All done.")
    assert RAN == {"wipe_everything": 0, "list_orders": 0}


async def test_a_restart_resumes_the_agent_where_it_paused(tmp_path: Path) -> None:
    async with redis_prefix() as prefix:
        config = settings(tmp_path, store=redis_store_url(prefix))
        async with running(shop(Script()), config) as server, widget(server) as w:
            welcome = await w.hello()
            await w.say("cancel 1001")
            card = await w.card("pending")
            port = server.port
        # Every instance gone; a new one, with a new agent and model, on the same store.
        script = Script()
        async with running(shop(script), config, port=port) as server, widget(server) as w:
            await w.hello(session_token=welcome["session_token"])
            await w.decide(await w.card("pending"))
            await w.update(card["card_id"], "done")
            await w.bot_says("All done.")
    assert [o["status"] for o in script.outcomes] == ["ok"]
