"""A Pydantic AI agent behind signoff's cards, driven by Pydantic AI's own offline
FunctionModel: its text streams, its calls of actions become reads or cards, and each
outcome comes back to it as the tool's return."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

from signoff import Signoff
from signoff.adapters.pydantic_ai import AgentBot
from signoff.config import Settings
from signoff.demo import DemoShop, register_shop
from tests.services import redis_prefix, redis_store_url
from tests.support import Server, Widget, running, settings, widget

# Each test on each store, but the restart's, which needs a store that outlives a server.
each_store = pytest.mark.usefixtures("each_store")

ADA = {"order_id": 1001, "customer": "Ada Lovelace", "total": 89.5}


class Script:
    """The model: what it answers each visitor message with, and what it was shown."""

    def __init__(self) -> None:
        self.tools: list[list[str]] = []
        self.returns: list[dict[str, Any]] = []

    async def stream(
        self, messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | dict[int, DeltaToolCall]]:
        self.tools.append(sorted(t.name for t in info.function_tools))
        last = messages[-1]
        assert isinstance(last, ModelRequest)
        returns = [p for p in last.parts if isinstance(p, ToolReturnPart)]
        if [p.tool_name for p in returns] == ["get_order"] and asked(messages) == "check 1001":
            self.returns.append(returns[0].content)
            yield "It is open; "
            yield {0: DeltaToolCall("cancel_order", json_args=json_of(ADA), tool_call_id="c9")}
            return
        if returns:
            self.returns.extend(p.content for p in returns)
            content = returns[0].content
            # Pydantic AI answers a call of a tool it was not given by itself, in words.
            status = content["status"] if isinstance(content, dict) else "unknown tool"
            yield "All " if status == "ok" else "Okay, "
            yield "done." if status == "ok" else f"not done: {status}."
            return
        said = next(p.content for p in last.parts if isinstance(p, UserPromptPart))
        if said == "cancel 1001":
            yield "Let me "
            yield "cancel that."
            yield {0: DeltaToolCall("cancel_order", json_args=json_of(ADA), tool_call_id="c1")}
        elif said == "cancel two":
            yield {
                0: DeltaToolCall("cancel_order", json_args=json_of(ADA), tool_call_id="c1"),
                1: DeltaToolCall(
                    "cancel_order",
                    json_args=json_of(
                        {"order_id": 1003, "customer": "Alan Turing", "total": 34.99}
                    ),
                    tool_call_id="c2",
                ),
            }
        elif said in ("look 1001", "check 1001"):
            yield {0: DeltaToolCall("get_order", json_args='{"order_id": 1001}', tool_call_id="g1")}
        elif said == "list":
            yield {0: DeltaToolCall("list_orders", json_args="{}", tool_call_id="l1")}
        elif said == "sneak":
            yield {0: DeltaToolCall("wipe_everything", json_args="{}", tool_call_id="w1")}
        else:
            yield "Hello."


def asked(messages: list[ModelMessage]) -> str:
    """The visitor's last message."""
    return next(
        part.content
        for message in reversed(messages)
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart)
    )


def json_of(value: dict[str, Any]) -> str:
    return json.dumps(value)


def shop(script: Script) -> tuple[Signoff, dict[str, int]]:
    agent = Agent(FunctionModel(stream_function=script.stream), instructions="Serve the shop.")
    ran = {"wipe_everything": 0, "list_orders": 0}

    @agent.tool_plain
    def wipe_everything() -> str:
        """Not an action: the agent must never run it around signoff."""
        ran["wipe_everything"] += 1
        return "wiped"

    @agent.tool_plain(requires_approval=True)
    def list_orders() -> str:
        """The agent wants a person's OK for this one, though signoff's action is a read."""
        ran["list_orders"] += 1
        return "never run by the agent"

    app = Signoff()
    register_shop(app, DemoShop())
    app.use_bot(AgentBot(agent, app.registry))
    return app, ran


async def deltas(w: Widget, fragment: str) -> list[str]:
    end = await w.bot_says(fragment)
    return [
        f["text"]
        for f in w.frames
        if f["type"] == "message.delta" and f["message_id"] == end["message_id"]
    ]


@contextlib.asynccontextmanager
async def serve(
    tmp_path: Path, script: Script
) -> AsyncIterator[tuple[Server, Widget, dict[str, int]]]:
    app, ran = shop(script)
    async with running(app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        yield server, w, ran


@each_store
async def test_text_streams_and_a_confirmed_call_runs_once_and_is_told(tmp_path: Path) -> None:
    script = Script()
    async with serve(tmp_path, script) as (_, w, _):
        await w.say("cancel 1001")
        # Streamed: the model's first words went out before the rest was written.
        assert (await deltas(w, "Let me cancel that."))[0] == "Let me "
        card = await w.card("pending")
        assert card["actions"][0]["args"] == ADA
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says("All done.")
    assert script.returns[0]["status"] == "ok"
    assert script.returns[0]["result"] == {"order_id": 1001, "status": "cancelled"}
    # The model is offered signoff's actions, and only those.
    assert script.tools[0] == [
        "add_note",
        "cancel_order",
        "delete_spam",
        "get_order",
        "list_orders",
        "list_spam",
        "refund",
    ]


@each_store
async def test_a_declined_card_comes_back_as_the_tools_refusal(tmp_path: Path) -> None:
    script = Script()
    async with serve(tmp_path, script) as (_, w, _):
        await w.say("cancel 1001")
        card = await w.card("pending")
        await w.decide(card, "cancel")
        await w.bot_says("Okay, not done: declined.")
    assert script.returns[0]["status"] == "declined"


@each_store
async def test_parallel_calls_are_one_chain_card_and_reads_run_at_once(tmp_path: Path) -> None:
    script = Script()
    async with serve(tmp_path, script) as (_, w, _):
        await w.say("look 1001")
        await w.bot_says("All done.")
        assert not [f for f in w.frames if f["type"] == "card"]
        await w.say("cancel two")
        card = await w.card("pending")
        assert [a["args"]["order_id"] for a in card["actions"]] == [1001, 1003]
    assert script.returns[0]["result"]["customer"] == "Ada Lovelace"


@each_store
async def test_the_agents_own_flags_gate_and_its_own_tools_never_run(tmp_path: Path) -> None:
    script = Script()
    async with serve(tmp_path, script) as (server, w, ran):
        # A read the agent marks requires_approval: a card, then signoff's action runs.
        await w.say("list")
        card = await w.card("pending")
        assert card["actions"][0]["action"] == "list_orders"
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says("All done.")
        # A tool of the agent's that is no action is not offered to the model: a call of
        # it is answered as unknown, by Pydantic AI, and runs nowhere.
        await w.say("sneak")
        await w.bot_says("Okay, not done: unknown tool.")
        await server.engine.drain()
        assert await server.engine.audit.rows(action="wipe_everything") == []
    assert ran == {"wipe_everything": 0, "list_orders": 0}


async def test_a_restart_resumes_the_agent_where_it_paused_and_reruns_nothing(
    tmp_path: Path,
) -> None:
    async with redis_prefix() as prefix:
        await resume_after_restart(settings(tmp_path, store=redis_store_url(prefix)))


async def resume_after_restart(config: Settings) -> None:
    script = Script()
    app, _ = shop(script)
    async with running(app, config) as server, widget(server) as w:
        welcome = await w.hello()
        await w.say("check 1001")
        card = await w.card("pending")  # after the look-up, which ran
        port = server.port
    # Every instance gone; a new one, and a new agent object, on the same store.
    script = Script()
    app, _ = shop(script)
    async with running(app, config, port=port) as server, widget(server) as w:
        await w.hello(session_token=welcome["session_token"])
        restored = await w.card("pending")
        assert restored["card_id"] == card["card_id"]
        await w.decide(restored)
        await w.update(card["card_id"], "done")
        await w.bot_says("All done.")
        await server.engine.drain()
        looked_up = await server.engine.audit.rows(action="get_order", status="success")
    assert len(looked_up) == 1  # ran once, before the pause
    # The new agent was asked once, with the whole turn: the look-up's result and the card's.
    assert [r["status"] for r in script.returns] == ["ok"]
    assert script.returns[0]["result"] == {"order_id": 1001, "status": "cancelled"}


def docs_example() -> str:
    text = (Path(__file__).parents[2] / "docs" / "adapters.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


@each_store
async def test_the_docs_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-used")  # the example names a real model
    shop_module: dict[str, Any] = {"__name__": "shop"}
    exec(compile(docs_example(), "docs/adapters.md", "exec"), shop_module)

    async def model(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | dict[int, DeltaToolCall]]:
        last = messages[-1]
        assert isinstance(last, ModelRequest)
        if any(isinstance(p, ToolReturnPart) for p in last.parts):
            yield "Cancelled."
        else:
            yield {0: DeltaToolCall("cancel_order", json_args='{"order_id": 7}')}

    # The example's agent, its model swapped for an offline one: nothing else changes.
    with shop_module["agent"].override(model=FunctionModel(stream_function=model)):
        async with running(shop_module["app"], settings(tmp_path)) as server, widget(server) as w:
            await w.hello()
            await w.say("cancel order 7")
            card = await w.card("pending")
            assert card["actions"][0]["effect"] == "Cancel order #7?"
            await w.decide(card)
            await w.update(card["card_id"], "done")
            await w.bot_says("Cancelled.")


@each_store
async def test_a_reload_mid_card_brings_the_card_back_and_it_still_resumes_the_agent(
    tmp_path: Path,
) -> None:
    script = Script()
    async with serve(tmp_path, script) as (server, w, _):
        await w.say("cancel 1001")
        card = await w.card("pending")
        # The tab reloads: a new socket on the same session.
        async with widget(server) as again:
            await again.hello(session_token=w.welcome["session_token"])
            restored = await again.card("pending")
            assert restored["card_id"] == card["card_id"]
            await again.decide(restored)
            await again.update(card["card_id"], "done")
            await again.bot_says("All done.")
    assert [r["status"] for r in script.returns] == ["ok"]
