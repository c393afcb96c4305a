"""A LangGraph agent as a signoff bot: ``app.use_bot(GraphBot(graph))``.

The graph is an agent whose model node hands its tool calls to a tool node (``tools``,
as LangGraph's and LangChain's prebuilt agents name it). Each bot step runs the graph
once over the conversation so far, streaming the model's text, and stops it before the
tool node: the graph never runs a tool itself. The calls become signoff calls (a read
runs, the rest wait on a card) and their outcomes come back in the next step as
``ToolMessage``\\ s. Each step runs on a checkpointer of its own, under a thread of its
own: the conversation is the whole state, so a paused turn resumes on any instance.

``action_tools(app.registry)`` gives the agent signoff's actions as LangChain tools
(their schemas, never their code), to build the graph with.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Collection
from typing import Any

from signoff.core.actions import Action, Registry
from signoff.core.bot import NO_ANSWER, BotContext
from signoff.core.conversation import Conversation, Text, ToolCall
from signoff.core.tools import tool_definition
from signoff.extras import missing_extra

try:
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        HumanMessage,
        ToolMessage,
    )
    from langchain_core.tools import BaseTool, StructuredTool
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph.state import CompiledStateGraph
except ModuleNotFoundError as exc:
    raise ImportError(missing_extra("langgraph", "signoff.adapters.langgraph")) from exc


class GraphBot:
    """Runs ``graph`` one step at a time over signoff's conversation, stopping it before
    ``tool_node``. ``needs_approval`` names tools whose calls always get a card, as a
    ``HumanInTheLoopMiddleware(interrupt_on=...)`` of the agent would have them approved."""

    def __init__(
        self,
        graph: CompiledStateGraph[Any],
        tool_node: str = "tools",
        *,
        needs_approval: Collection[str] = (),
    ) -> None:
        if tool_node not in graph.nodes:
            raise ValueError(
                f"the graph has no node {tool_node!r} to stop before (its nodes: "
                f"{', '.join(n for n in graph.nodes if not n.startswith('__'))}); pass "
                "tool_node= the node that runs the model's tool calls"
            )
        self.graph = graph
        self.tool_node = tool_node
        self.needs_approval = frozenset(needs_approval)

    async def respond(
        self, conversation: Conversation, context: BotContext
    ) -> AsyncIterator[Text | ToolCall]:
        # A checkpointer of the step's own: interrupting needs one, and nothing is kept.
        graph = self.graph.copy(update={"checkpointer": InMemorySaver()})
        config: Any = {"configurable": {"thread_id": f"{context.conversation_id}:{uuid.uuid4()}"}}
        said = False
        # Any: what the stream yields depends on its mode: here (chunk, metadata) pairs.
        stream: Any = graph.astream(
            {"messages": messages(conversation)},
            config,
            stream_mode="messages",
            interrupt_before=[self.tool_node],
        )
        async for chunk, meta in stream:
            from_model = meta.get("langgraph_node") != self.tool_node
            if from_model and isinstance(chunk, AIMessage | AIMessageChunk) and chunk.text:
                said = True
                yield Text(chunk.text)
        state = await graph.aget_state(config)
        last = state.values["messages"][-1] if state.values.get("messages") else None
        if self.tool_node in state.next and isinstance(last, AIMessage):
            for call in last.tool_calls:
                name = call["name"]
                flagged = name in self.needs_approval
                yield ToolCall(name, dict(call["args"]), call.get("id") or "", needs_card=flagged)
        elif not said:
            yield Text(NO_ANSWER)


def messages(conversation: Conversation) -> list[BaseMessage]:
    """The conversation as LangChain messages."""
    history: list[BaseMessage] = []
    for message in conversation:
        role = message.get("role")
        if role == "user":
            history.append(HumanMessage(str(message.get("content") or "")))
        elif role == "tool":
            history.append(
                ToolMessage(
                    str(message.get("content") or ""),
                    tool_call_id=str(message.get("tool_call_id") or ""),
                )
            )
        elif role == "assistant":
            calls = [
                {
                    "name": call["function"]["name"],
                    "args": _arguments(call["function"].get("arguments")),
                    "id": call["id"],
                }
                for call in message.get("tool_calls") or []
            ]
            if message.get("content") or calls:
                history.append(AIMessage(str(message.get("content") or ""), tool_calls=calls))
    return history


def _arguments(text: Any) -> dict[str, Any]:
    try:
        args = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return {}
    return args if isinstance(args, dict) else {}


def action_tools(registry: Registry) -> list[BaseTool]:
    """signoff's actions as LangChain tools for the agent's model: their names,
    descriptions and argument schemas. Their code is never theirs to run: the graph
    stops before its tool node, and signoff runs each call."""
    return [_tool(action) for action in registry]


def _tool(action: Action) -> BaseTool:
    def never(**args: Any) -> Any:
        raise RuntimeError(f"{action.name} runs through signoff, not in the graph")

    return StructuredTool.from_function(
        func=never,
        name=action.name,
        description=tool_definition(action)["function"]["description"] or action.title,
        args_schema=action.args_model,
    )
