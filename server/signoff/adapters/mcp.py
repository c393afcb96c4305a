"""An MCP server's tools as signoff actions: ``mcp_actions(app, server)``.

The server is reached with the official ``mcp`` SDK, over stdio (a
``StdioServerParameters`` naming the command to start) or streamable HTTP (its URL). The
connection opens as signoff starts, before it serves, and each tool becomes an action:
``readOnlyHint`` tools run at once as reads, ``destructiveHint`` tools are destructive,
the rest are writes, unless the site says otherwise (``kinds``). A card says what the
tool's title and description say, with its arguments, unless ``messages`` gives its own.
Calls go to the server only through signoff: held, audited and run exactly once.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from signoff.app import Signoff
from signoff.core.actions import ActionError, Kind, make_action
from signoff.engine.context import ActionContext
from signoff.extras import missing_extra

try:
    from mcp import Client, StdioServerParameters
    from mcp_types import CallToolResult, TextContent, Tool
except ModuleNotFoundError as exc:
    raise ImportError(missing_extra("mcp", "signoff.adapters.mcp")) from exc

# JSON Schema's types as the Python types an action's signature declares; anything else
# (a union, a schema without a type) is taken as it comes, and the server checks it.
JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list[Any],
    "object": dict[str, Any],
}
ACTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class ToolError(RuntimeError):
    """The server answered a call with an error: the call failed."""


def mcp_actions(
    app: Signoff,
    server: StdioServerParameters | str,
    *,
    kinds: Mapping[str, str] | None = None,
    messages: Mapping[str, str] | None = None,
    **options: Any,
) -> None:
    """Register ``server``'s tools as ``app``'s actions when the app starts serving.

    ``kinds`` and ``messages`` name a tool's kind or card message where the site knows
    better than its hints; ``options`` go to every action (``approver=team(...)``, say).
    """

    @contextlib.asynccontextmanager
    async def connected() -> AsyncIterator[None]:
        async with Client(server) as client:
            for tool in (await client.list_tools()).tools:
                app.registry.add(tool_action(client, tool, kinds or {}, messages or {}, options))
            yield

    app.while_serving.append(connected)


def tool_action(
    client: Client,
    tool: Tool,
    kinds: Mapping[str, str],
    messages: Mapping[str, str],
    options: Mapping[str, Any],
) -> Any:
    """One tool as an action whose call is the tool's call."""
    if not ACTION_NAME.fullmatch(tool.name):
        raise ActionError(f"MCP tool {tool.name!r}: not a name signoff can give an action")

    async def call(ctx: ActionContext, **args: Any) -> Any:
        given = {name: value for name, value in args.items() if value is not None}
        return answer(await client.call_tool(tool.name, given))

    call.__signature__ = signature(tool.input_schema)  # type: ignore[attr-defined]
    title = tool.title or (tool.annotations.title if tool.annotations else None)
    return make_action(
        call,
        name=tool.name,
        kind=kinds.get(tool.name) or hinted_kind(tool),
        title=title,
        description=tool.description or "",
        message=messages.get(tool.name),
        **options,
    )


def hinted_kind(tool: Tool) -> Kind:
    hints = tool.annotations
    if hints is not None and hints.read_only_hint:
        return Kind.READ
    if hints is not None and hints.destructive_hint:
        return Kind.DESTRUCTIVE
    return Kind.WRITE


def signature(schema: Mapping[str, Any]) -> inspect.Signature:
    """An action's signature from a tool's input schema: its top-level properties, the
    required ones first."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for optional in (False, True):
        for name, spec in properties.items():
            if (name not in required) != optional:
                continue
            spec = spec if isinstance(spec, dict) else {}
            kind = JSON_TYPES.get(str(spec.get("type")), Any)
            default = spec.get("default") if optional else None
            params.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=kind if not optional else kind | None,
                    default=inspect.Parameter.empty if not optional else default,
                )
            )
    return inspect.Signature(params)


def answer(result: CallToolResult) -> Any:
    """What a call returned: its structured content, else its text; a ToolError if the
    server says the call failed."""
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    if result.is_error:
        raise ToolError(text or "the tool failed")
    if result.structured_content is not None:
        return result.structured_content
    return text
