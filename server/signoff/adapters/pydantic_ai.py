"""A Pydantic AI agent as a signoff bot: ``app.use_bot(AgentBot(agent, app.registry))``.

Each bot step is one run of the agent over the conversation so far, its text streamed as
the model writes it. The agent's tools are signoff's actions, and only those: the run
sees them as external tools (the agent never runs them itself), so a call the model makes
stops the run as deferred, and becomes a signoff call (a read runs, the rest wait on a
card). Its outcome (run, failed, declined, rejected, expired) comes back in the next step
as the tool's return, in Pydantic AI's own message form. Tools registered on the agent run
only if an action of that name is registered too, and then as the action; one the agent
marks ``requires_approval`` (or wraps in an approval-required toolset) always gets a card.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from signoff.core.actions import Registry
from signoff.core.bot import NO_ANSWER, BotContext
from signoff.core.conversation import Conversation, Text, ToolCall
from signoff.core.tools import tool_definition
from signoff.extras import missing_extra

try:
    from pydantic_ai import Agent, DeferredToolRequests
    from pydantic_ai.messages import (
        AgentStreamEvent,
        ModelMessage,
        ModelRequest,
        ModelResponse,
        PartDeltaEvent,
        PartStartEvent,
        TextPart,
        TextPartDelta,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )
    from pydantic_ai.run import AgentRunResultEvent
    from pydantic_ai.tools import ToolDefinition
    from pydantic_ai.toolsets import (
        AbstractToolset,
        ApprovalRequiredToolset,
        CombinedToolset,
        ExternalToolset,
        FunctionToolset,
        WrapperToolset,
    )
except ModuleNotFoundError as exc:
    raise ImportError(missing_extra("pydantic-ai", "signoff.adapters.pydantic_ai")) from exc


class AgentBot:
    """Runs ``agent`` one step at a time over signoff's conversation.

    ``deps`` makes the run's dependencies from the step's context (whose conversation it
    is), for agents whose instructions or tools read them.
    """

    def __init__(
        self,
        agent: Agent[Any, Any],
        registry: Registry,
        *,
        deps: Callable[[BotContext], Any] | None = None,
    ) -> None:
        self.agent = agent
        self.registry = registry
        self.deps = deps
        self.needs_approval = approval_flagged(agent.toolsets)

    async def respond(
        self, conversation: Conversation, context: BotContext
    ) -> AsyncIterator[Text | ToolCall]:
        tools = ExternalToolset([_definition(action) for action in self.registry])
        output: Any = None
        said = False
        with self.agent.override(tools=[], toolsets=[tools]):
            # Any: the stream's type depends on the output types, which differ per agent.
            run: Any = self.agent.run_stream_events(
                message_history=messages(conversation),
                output_type=[str, DeferredToolRequests],
                deps=self.deps(context) if self.deps else None,
            )
            async with run as events:
                async for event in events:
                    if isinstance(event, AgentRunResultEvent):
                        output = event.result.output
                    elif text := _text(event):
                        said = True
                        yield Text(text)
        if isinstance(output, DeferredToolRequests):
            for part in [*output.calls, *output.approvals]:
                yield self._call(part)
        elif not said:
            yield Text(str(output) if output else NO_ANSWER)

    def _call(self, part: ToolCallPart) -> ToolCall:
        flagged = part.tool_name in self.needs_approval
        try:
            args = part.args_as_dict()
        except ValueError as exc:  # arguments that are not JSON: the model is told so
            return ToolCall(part.tool_name, {}, part.tool_call_id, error=f"bad arguments: {exc}")
        return ToolCall(part.tool_name, args, part.tool_call_id, needs_card=flagged)


def _definition(action: Any) -> ToolDefinition:
    function = tool_definition(action)["function"]
    return ToolDefinition(
        name=function["name"],
        description=function["description"],
        parameters_json_schema=function["parameters"],
    )


def _text(event: AgentStreamEvent | AgentRunResultEvent[Any]) -> str:
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    return ""


def messages(conversation: Conversation) -> list[ModelMessage]:
    """The conversation in Pydantic AI's message form: the visitor's messages and the tool
    results as requests, the bot's text and calls as responses."""
    history: list[ModelMessage] = []
    names: dict[str, str] = {}  # tool call id -> action name, for the returns

    def request(part: UserPromptPart | ToolReturnPart) -> None:
        if history and isinstance(history[-1], ModelRequest):
            history[-1].parts = [*history[-1].parts, part]
        else:
            history.append(ModelRequest(parts=[part]))

    for message in conversation:
        role = message.get("role")
        if role == "user":
            request(UserPromptPart(str(message.get("content") or "")))
        elif role == "tool":
            call_id = str(message.get("tool_call_id") or "")
            request(
                ToolReturnPart(
                    tool_name=names.get(call_id, ""),
                    content=_content(message.get("content")),
                    tool_call_id=call_id,
                )
            )
        elif role == "assistant":
            parts: list[TextPart | ToolCallPart] = []
            if message.get("content"):
                parts.append(TextPart(str(message["content"])))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                names[call["id"]] = function.get("name", "")
                parts.append(
                    ToolCallPart(function.get("name", ""), function.get("arguments"), call["id"])
                )
            if parts:
                history.append(ModelResponse(parts=parts))
    return history


def _content(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def approval_flagged(toolsets: Iterable[AbstractToolset[Any]]) -> frozenset[str]:
    """The names of the agent's own tools it wants approved before they run."""
    names: set[str] = set()

    def walk(toolset: AbstractToolset[Any], approving: bool) -> None:
        if isinstance(toolset, ApprovalRequiredToolset):
            approving = True
        if isinstance(toolset, FunctionToolset):
            names.update(
                name for name, tool in toolset.tools.items() if approving or tool.requires_approval
            )
        elif isinstance(toolset, CombinedToolset):
            for inner in toolset.toolsets:
                walk(inner, approving)
        elif isinstance(toolset, WrapperToolset):
            walk(toolset.wrapped, approving)

    for toolset in toolsets:
        walk(toolset, False)
    return frozenset(names)
