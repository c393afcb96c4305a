"""The optional extras (``pip install 'signoff[postgres]'``, …): which modules each one
installs, and the one-line error a setting that needs a missing one gets."""

from __future__ import annotations

from importlib.util import find_spec

# The extra's name in pyproject.toml, and the modules signoff imports from it.
EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("asyncpg",),
    "slack": ("slack_sdk", "aiohttp"),
    "llm": ("openai",),
    "pydantic-ai": ("pydantic_ai",),
    "mcp": ("mcp",),
    "langgraph": ("langgraph", "langchain_core"),
    "openai-agents": ("agents",),
}


def missing_extra(extra: str, needed_by: str) -> str | None:
    """None when ``extra`` is installed; else the error for ``needed_by`` (the setting
    that asks for it), naming the extra and the command that installs it."""
    if all(find_spec(module) is not None for module in EXTRAS[extra]):
        return None
    return (
        f"{needed_by} needs the {extra} extra, which is not installed: "
        f"pip install 'signoff[{extra}]'"
    )
