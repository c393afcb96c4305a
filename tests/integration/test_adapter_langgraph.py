"""A LangGraph agent behind signoff's cards: the canonical agent graph (a model node and a
ToolNode, routed by tools_condition), its model a LangChain chat model of the test's own
that streams. The graph is stopped before its tool node every step: its tools never run."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from signoff import Signoff
from signoff.adapters.langgraph import GraphBot, action_tools
from signoff.demo import DemoShop, register_shop
from tests.services import redis_prefix, redis_store_url
from tests.support import running, settings, widget

# Each test on each store, but the restart's, which needs a store that outlives a server.
each_store = pytest.mark.usefixtures("each_store")

ADA = {"order_id": 1001, "customer": "Ada Lovelace", "total": 89.5}
TRIED = {"wipe_everything": 0}


class ScriptedChat(BaseChatModel):
    """Streams its answer word by word, then its tool calls, as chat models do."""

    seen_tools: list[str] = []
    results: list[dict[str, Any]] = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChat:
        self.seen_tools[:] = sorted(t.name for t in tools)
        return self

    def _generate(self, messages: list[BaseMessage], *a: Any, **k: Any) -> ChatResult:
        chunks = list(self._stream(messages))
        message = chunks[0].message
        for chunk in chunks[1:]:
            message += chunk.message
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self, messages: list[BaseMessage], *a: Any, **k: Any
    ) -> Iterator[ChatGenerationChunk]:
        words, calls = self.answer(messages)
        for word in words:
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        if calls:
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {"name": name, "args": json.dumps(args), "id": f"c{i}", "index": i}
                        for i, (name, args) in enumerate(calls)
                    ],
                )
            )

    def answer(self, messages: list[BaseMessage]) -> tuple[list[str], list[tuple[str, Any]]]:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            result = json.loads(str(last.content)) if str(last.content).startswith("{") else {}
            self.results.append(result)
            status = result.get("status", "error")
            return (["All ", "done."] if status == "ok" else ["Okay, ", f"not done: {status}."]), []
        said = next(m for m in reversed(messages) if isinstance(m, HumanMessage)).content
        if said == "cancel 1001":
            return ["Let me ", "cancel that."], [("cancel_order", ADA)]
        if said == "look 1001":
            return [], [("get_order", {"order_id": 1001})]
        if said == "sneak":
            return [], [("wipe_everything", {})]
        return ["Hello."], []


@tool
def wipe_everything() -> str:
    """The agent's own tool, no action: it must never run around signoff."""
    TRIED["wipe_everything"] += 1
    return "wiped"


def shop(model: ScriptedChat, needs_approval: tuple[str, ...] = ()) -> Signoff:
    app = Signoff()
    register_shop(app, DemoShop())
    tools = [*action_tools(app.registry), wipe_everything]
    bound = model.bind_tools(tools)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    app.use_bot(GraphBot(builder.compile(), needs_approval=needs_approval))
    return app


@each_store
async def test_the_graph_streams_and_its_calls_go_through_cards(tmp_path: Path) -> None:
    model = ScriptedChat()
    async with running(shop(model), settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("cancel 1001")
        end = await w.bot_says("Let me cancel that.")
        deltas = [
            f["text"]
            for f in w.frames
            if f["type"] == "message.delta" and f["message_id"] == end["message_id"]
        ]
        assert deltas[0] == "Let me "  # streamed as the model wrote it
        card = await w.card("pending")
        assert card["actions"][0]["args"] == ADA
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says("All done.")

        await w.say("cancel 1001")  # already cancelled now: the call fails, once
        card = await w.card("pending")
        await w.decide(card, "cancel")
        await w.bot_says("Okay, not done: declined.")

        await w.say("look 1001")  # a read: at once, no card
        await w.bot_says("All done.")
        assert len([f for f in w.frames if f["type"] == "card"]) == 2
    assert model.results[0]["result"] == {"order_id": 1001, "status": "cancelled"}
    assert model.results[2]["result"]["status"] == "cancelled"
    assert "cancel_order" in model.seen_tools and "wipe_everything" in model.seen_tools


@each_store
async def test_a_tool_of_the_graphs_own_never_runs(tmp_path: Path) -> None:
    TRIED["wipe_everything"] = 0
    async with running(shop(ScriptedChat()), settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("sneak")
        await w.bot_says("Okay, not done: error.")
        await server.engine.drain()
        [refused] = await server.engine.audit.rows(action="wipe_everything")
        assert refused["status"] == "refused"
    assert TRIED["wipe_everything"] == 0


@each_store
async def test_a_tool_the_agent_wants_approved_gets_a_card(tmp_path: Path) -> None:
    app = shop(ScriptedChat(), needs_approval=("get_order",))
    async with running(app, settings(tmp_path)) as server, widget(server) as w:
        await w.hello()
        await w.say("look 1001")  # a read, but the agent's own rules want it approved
        card = await w.card("pending")
        assert card["actions"][0]["action"] == "get_order"
        await w.decide(card)
        await w.update(card["card_id"], "done")
        await w.bot_says("All done.")


def test_a_graph_without_the_tool_node_is_named() -> None:
    builder = StateGraph(MessagesState)
    builder.add_node("model", lambda state: {"messages": []})
    builder.add_edge(START, "model")
    with pytest.raises(ValueError, match="no node 'tools' to stop before \\(its nodes: model\\)"):
        GraphBot(builder.compile())


async def test_a_restart_resumes_the_graph_where_it_paused(tmp_path: Path) -> None:
    async with redis_prefix() as prefix:
        config = settings(tmp_path, store=redis_store_url(prefix))
        async with running(shop(ScriptedChat()), config) as server, widget(server) as w:
            welcome = await w.hello()
            await w.say("cancel 1001")
            card = await w.card("pending")
            port = server.port
        # Every instance gone; a new one, with a new graph and model, on the same store.
        model = ScriptedChat()
        model.results.clear()
        async with running(shop(model), config, port=port) as server, widget(server) as w:
            await w.hello(session_token=welcome["session_token"])
            await w.decide(await w.card("pending"))
            await w.update(card["card_id"], "done")
            await w.bot_says("All done.")
    assert model.results[-1]["result"] == {"order_id": 1001, "status": "cancelled"}
