"""An OpenAI Agents SDK agent as a signoff bot: ``app.use_bot(AgentsBot(agent, app.registry))``.

Each bot step is one run of the agent over the conversation so far (as Responses API
input items), its text streamed as the model writes it. For the run the agent's tools are
signoff's actions, and only those, each marked ``needs_approval``: a call the model makes
stops the run as an interruption, before anything runs, and becomes a signoff call (a read
runs, the rest wait on a card). Its outcome comes back in the next step as the call's
``function_call_output``. The agent's own tools, handoffs and MCP servers are left out of
the run, so nothing runs around signoff; a tool of its own that the agent marks
``needs_approval`` makes that action's calls get a card even where signoff would run them
at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from signoff.core.actions import Action, Registry
from signoff.core.bot import NO_ANSWER, BotContext
from signoff.core.conversation import Conversation, Text, ToolCall
from signoff.core.tools import tool_definition
from signoff.extras import missing_extra

try:
    from agents import Agent, FunctionTool, Runner
    from openai.types.responses import ResponseTextDeltaEvent
except ModuleNotFoundError as exc:
    raise ImportError(missing_extra("openai-agents", "signoff.adapters.openai_agents")) from exc


class AgentsBot:
    """Runs ``agent`` one step at a time over signoff's conversation.

    ``context`` makes the run's context object from the step's ``BotContext``, for agents
    whose instructions read it.
    """

    def __init__(
        self,
        agent: Agent[Any],
        registry: Registry,
        *,
        context: Callable[[BotContext], Any] | None = None,
    ) -> None:
        self.agent = agent
        self.registry = registry
        self.context = context
        self.needs_approval = frozenset(
            tool.name
            for tool in agent.tools
            if isinstance(tool, FunctionTool) and tool.needs_approval is not False
        )

    async def respond(
        self, conversation: Conversation, context: BotContext
    ) -> AsyncIterator[Text | ToolCall]:
        agent = self.agent.clone(
            tools=[_tool(action) for action in self.registry], handoffs=[], mcp_servers=[]
        )
        run = Runner.run_streamed(
            agent,
            items(conversation),
            context=self.context(context) if self.context else None,
        )
        said = False
        async for event in run.stream_events():
            if event.type == "raw_response_event" and isinstance(
                event.data, ResponseTextDeltaEvent
            ):
                said = True
                yield Text(event.data.delta)
        for interruption in run.interruptions:
            call = interruption.raw_item
            name = str(getattr(call, "name", ""))
            try:
                args = json.loads(getattr(call, "arguments", "") or "{}")
            except ValueError as exc:
                yield ToolCall(
                    name, {}, str(getattr(call, "call_id", "")), error=f"bad arguments: {exc}"
                )
                continue
            yield ToolCall(
                name,
                args if isinstance(args, dict) else {},
                str(getattr(call, "call_id", "")),
                needs_card=name in self.needs_approval,
            )
        if not said and not run.interruptions:
            yield Text(str(run.final_output or "") or NO_ANSWER)


def items(conversation: Conversation) -> list[Any]:
    """The conversation as Responses API input items."""
    converted: list[Any] = []
    for message in conversation:
        role = message.get("role")
        if role == "user":
            converted.append({"role": "user", "content": str(message.get("content") or "")})
        elif role == "tool":
            converted.append(
                {
                    "type": "function_call_output",
                    "call_id": str(message.get("tool_call_id") or ""),
                    "output": str(message.get("content") or ""),
                }
            )
        elif role == "assistant":
            if message.get("content"):
                converted.append({"role": "assistant", "content": str(message["content"])})
            for call in message.get("tool_calls") or []:
                converted.append(
                    {
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": call["function"]["name"],
                        "arguments": call["function"].get("arguments") or "{}",
                    }
                )
    return converted


def _tool(action: Action) -> FunctionTool:
    function = tool_definition(action)["function"]

    async def never(ctx: Any, arguments: str) -> Any:
        raise RuntimeError(f"{action.name} runs through signoff, not in the agent")

    return FunctionTool(
        name=action.name,
        description=function["description"] or action.title,
        params_json_schema=function["parameters"],
        on_invoke_tool=never,
        strict_json_schema=False,
        # Every call stops the run before it runs: signoff decides what runs, and when.
        needs_approval=True,
    )
