"""The demo shop through an agent framework's adapter, offline: ``signoff demo --bot
pydantic-ai`` (or ``langgraph``, ``openai-agents``). A test model of the framework's kind
stands in for a real one, scripted by the demo's rules, so every phrase of the demo page,
card flow included, goes through the adapter exactly as a model's answers would."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from signoff.config import ConfigError
from signoff.core.actions import Registry
from signoff.core.conversation import (
    Conversation,
    Text,
    ToolCall,
    assistant_message,
    tool_message,
)
from signoff.demo.bot import DemoBot
from signoff.demo.shop import DEMO_PROMPT
from signoff.extras import missing_extra

BOTS = ("rules", "pydantic-ai", "langgraph", "openai-agents")


def pydantic_ai_bot(registry: Registry) -> Any:
    """An ``AgentBot`` whose agent's model is Pydantic AI's ``FunctionModel``, scripted."""
    missing = missing_extra("pydantic-ai", "signoff demo --bot pydantic-ai")
    if missing:
        raise ConfigError(missing)
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

    from signoff.adapters.pydantic_ai import AgentBot

    rules = DemoBot()

    async def answer(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | dict[int, DeltaToolCall]]:
        calls: dict[int, DeltaToolCall] = {}
        async for item in rules.respond(conversation_of(messages)):
            if isinstance(item, Text):
                yield item.text
            else:
                calls[len(calls)] = DeltaToolCall(item.name, json.dumps(item.args))
        if calls:
            yield calls

    agent = Agent(FunctionModel(stream_function=answer), instructions=DEMO_PROMPT)
    return AgentBot(agent, registry)


def conversation_of(messages: list[Any]) -> Conversation:
    """Pydantic AI's messages back in signoff's form, for the demo's rules to read."""
    from pydantic_ai.messages import (
        ModelRequest,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )

    conversation: Conversation = []
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart):
                    conversation.append({"role": "user", "content": str(part.content)})
                elif isinstance(part, ToolReturnPart):
                    content = dict(part.content) if isinstance(part.content, dict) else {}
                    conversation.append(tool_message(part.tool_call_id, content))
            continue
        text = "".join(p.content for p in message.parts if isinstance(p, TextPart))
        calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
        reply = assistant_message(text, [])
        if calls:
            reply["tool_calls"] = [
                {
                    "id": call.tool_call_id,
                    "type": "function",
                    "function": {"name": call.tool_name, "arguments": call.args_as_json_str()},
                }
                for call in calls
            ]
        conversation.append(reply)
    return conversation


def langgraph_bot(registry: Registry) -> Any:
    """A ``GraphBot`` over the canonical agent graph, its chat model scripted."""
    missing = missing_extra("langgraph", "signoff demo --bot langgraph")
    if missing:
        raise ConfigError(missing)
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        HumanMessage,
        ToolCallChunk,
        message_chunk_to_message,
    )
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from signoff.adapters.langgraph import GraphBot, action_tools

    rules = DemoBot()

    class ScriptedChat(BaseChatModel):
        """Answers as the demo's rules would, word by word, then its tool calls."""

        @property
        def _llm_type(self) -> str:
            return "signoff-demo"

        def _generate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> ChatResult:
            # A sync invoke (from a thread with no loop of its own): the same answer.
            return asyncio.run(self._agenerate(messages))

        async def _agenerate(
            self, messages: list[BaseMessage], *args: Any, **kw: Any
        ) -> ChatResult:
            """The whole answer at once: the streamed chunks joined."""
            joined: AIMessageChunk = AIMessageChunk(content="")
            async for chunk in self._astream(messages):
                joined += chunk.message  # type: ignore[assignment]
            return ChatResult(
                generations=[ChatGeneration(message=message_chunk_to_message(joined))]
            )

        async def _astream(
            self, messages: list[BaseMessage], *args: Any, **kw: Any
        ) -> AsyncIterator[ChatGenerationChunk]:
            history: Conversation = []
            for message in messages:
                if isinstance(message, HumanMessage):
                    history.append({"role": "user", "content": message.text})
                elif isinstance(message, AIMessage):
                    asked = [
                        ToolCall(c["name"], c["args"], c["id"] or "") for c in message.tool_calls
                    ]
                    history.append(assistant_message(message.text, asked))
                else:  # a ToolMessage
                    content = json.loads(str(message.content) or "{}")
                    history.append(tool_message(getattr(message, "tool_call_id", ""), content))
            calls: list[ToolCallChunk] = []
            async for item in rules.respond(history):
                if isinstance(item, Text):
                    yield ChatGenerationChunk(message=AIMessageChunk(content=item.text))
                else:
                    calls.append(
                        {
                            "name": item.name,
                            "args": json.dumps(item.args),
                            "id": f"call_{uuid.uuid4().hex[:12]}",
                            "index": len(calls),
                        }
                    )
            if calls:
                yield ChatGenerationChunk(
                    message=AIMessageChunk(content="", tool_call_chunks=calls)
                )

    tools = action_tools(registry)
    model = ScriptedChat()

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return GraphBot(graph.compile())


def openai_agents_bot(registry: Registry) -> Any:
    """An ``AgentsBot`` whose model answers as the demo's rules would: the SDK's own
    ``ScriptedModel``, a fresh one for each call, so nothing piles up in a long demo."""
    missing = missing_extra("openai-agents", "signoff demo --bot openai-agents")
    if missing:
        raise ConfigError(missing)
    from agents import Agent, set_tracing_disabled
    from agents.models.interface import Model
    from agents.testing import ModelCall, ModelStep, ScriptedModel, function_call
    from agents.testing import assistant_message as said

    from signoff.adapters.openai_agents import AgentsBot

    set_tracing_disabled(True)  # an offline demo sends no traces anywhere
    rules = DemoBot()

    async def answer(call: ModelCall) -> list[Any]:
        output: list[Any] = []
        async for item in rules.respond(conversation_of_items(call.input)):
            if isinstance(item, Text):
                output.append(said(item.text, item_id=f"msg_{uuid.uuid4().hex[:12]}"))
            else:
                call_id = f"call_{uuid.uuid4().hex[:12]}"
                output.append(function_call(item.name, item.args, call_id=call_id))
        return output

    class RulesModel(Model):
        async def get_response(self, *args: Any, **kwargs: Any) -> Any:
            return await ScriptedModel([ModelStep.respond(answer)]).get_response(*args, **kwargs)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            return ScriptedModel([ModelStep.respond(answer)]).stream_response(*args, **kwargs)

    agent = Agent(name="demo shop", instructions=DEMO_PROMPT, model=RulesModel())
    return AgentsBot(agent, registry)


def conversation_of_items(items: Any) -> Conversation:
    """Responses API input items back in signoff's form, for the demo's rules to read."""
    conversation: Conversation = []
    for item in items if isinstance(items, list) else []:
        kind = item.get("type")
        if kind == "function_call":
            asked = ToolCall(item["name"], json.loads(item["arguments"] or "{}"), item["call_id"])
            if conversation and conversation[-1]["role"] == "assistant":
                conversation[-1].setdefault("tool_calls", []).extend(
                    assistant_message("", [asked])["tool_calls"]
                )
            else:
                conversation.append(assistant_message("", [asked]))
        elif kind == "function_call_output":
            conversation.append(tool_message(item["call_id"], json.loads(item["output"] or "{}")))
        elif item.get("role") == "assistant":
            conversation.append(assistant_message(str(item.get("content") or ""), []))
        elif item.get("role") == "user":
            conversation.append({"role": "user", "content": str(item.get("content") or "")})
    return conversation
