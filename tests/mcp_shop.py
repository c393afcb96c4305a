"""An MCP server of the tests' own, over stdio (or streamable HTTP on the port given as
its argument): a shop's stock. Each call that changes
something is written to the file SHOP_CALLS names, so a test can count what ran.

Run: python tests/mcp_shop.py [port] (the MCP adapter's tests start it themselves).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("shop")
CALLS = Path(os.environ["SHOP_CALLS"])


def ran(line: str) -> None:
    with CALLS.open("a") as calls:
        calls.write(line + "\n")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def get_stock(target: str) -> dict[str, int]:
    """How many of a product are in stock."""
    return {"in_stock": 7}


@server.tool(title="Delete product", annotations=ToolAnnotations(destructive_hint=True))
def delete_product(target: str) -> str:
    """Remove a product from the catalogue for good."""
    ran(f"delete {target}")
    return f"deleted {target}"


@server.tool()
def restock(target: str, count: int = 10) -> dict[str, int]:
    """Order more of a product."""
    ran(f"restock {target} {count}")
    return {"ordered": count}


@server.tool()
def broken(target: str) -> str:
    """Always fails."""
    raise ValueError(f"no such product {target}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
