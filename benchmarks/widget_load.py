"""The widget's weight on a host page: bytes on the wire and the time to a usable launcher.

One run, in Debian's Chromium (Playwright), on a throttled connection (Chrome DevTools'
"Slow 4G": 150 ms round trip, 1.6 Mbit/s down, 750 kbit/s up), against one demo server.
Two ways of shipping the same widget, side by side:

1. **served**: ``/widget.js`` as signoff serves it, the stylesheet inside, brotli, ETag;
2. **as files** (the peer): ``widget.js`` and ``widget.css`` as they are on disk,
   uncompressed, without cache headers, the script linking the stylesheet.

Each is loaded on a fresh page (empty cache) and then on a second page view in the same
browser (warm cache). Measured: the bytes the browser received for the widget's files
(headers included) and the time from navigation start until the launcher is on screen
with its styles and clickable.

``python -m benchmarks.widget_load`` (``--runs N``, ``--no-throttle``).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import uvicorn
from playwright.async_api import Browser, Page, async_playwright
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from benchmarks.chromium import launch
from signoff.assets import asset_dir
from signoff.config import Settings, Site
from signoff.demo import demo_app

SLOW_4G = {"latency": 150, "downloadThroughput": 1_600_000 / 8, "uploadThroughput": 750_000 / 8}
UNTHROTTLED = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
WAYS = {"served": "/widget.js", "as files": "/files/widget.js"}
# The launcher on screen, styled (fixed in a corner) and enabled: what a visitor can click.
LAUNCHER_READY = """() => {
  const root = document.getElementById("signoff-root");
  const button = root && root.shadowRoot && root.shadowRoot.querySelector(".signoff-launcher");
  if (!button || button.disabled || getComputedStyle(button).position !== "fixed") return false;
  const box = button.getBoundingClientRect();
  return box.width > 0 && getComputedStyle(button.parentElement).display !== "none";
}"""


@dataclass
class Load:
    way: str
    cache: str
    wire_bytes: list[int] = field(default_factory=list)
    ready_ms: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shop_page(script: str) -> str:
    return (
        "<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1>"
        f'<script src="{script}" data-site="demo" async></script></body></html>'
    )


def peer_routes() -> list[Route]:
    """The host pages, and the widget's files as they are on disk."""
    widget = asset_dir("widget")

    async def files(request: Request) -> Response:
        name = request.path_params["name"]
        media = "text/javascript" if name == "widget.js" else "text/css"
        return FileResponse(widget / name, media_type=media, headers={"etag": ""})

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(shop_page(WAYS[request.query_params["way"]]))

    return [Route("/files/{name:str}", files), Route("/shop", page)]


async def view(browser_page: Page, url: str, load: Load, network: dict[str, float]) -> None:
    cdp = await browser_page.context.new_cdp_session(browser_page)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions", {"offline": False, **network})
    wire: dict[str, int] = {}
    urls: dict[str, str] = {}
    cdp.on(
        "Network.responseReceived", lambda e: urls.__setitem__(e["requestId"], e["response"]["url"])
    )
    cdp.on(
        "Network.loadingFinished",
        lambda e: wire.__setitem__(e["requestId"], int(e["encodedDataLength"])),
    )
    await browser_page.goto(url)
    await browser_page.wait_for_function(LAUNCHER_READY, polling=5)
    ready = await browser_page.evaluate("performance.now()")
    await asyncio.sleep(0.2)  # let the last loadingFinished arrive
    load.ready_ms.append(ready)
    load.wire_bytes.append(
        sum(size for rid, size in wire.items() if "/widget." in urls.get(rid, ""))
    )
    await cdp.detach()


async def measure(browser: Browser, base: str, runs: int, network: dict[str, float]) -> list[Load]:
    loads = []
    for way in WAYS:
        cold, warm = Load(way, "empty cache"), Load(way, "second page view")
        for _ in range(runs):
            context = await browser.new_context()
            for load in (cold, warm):
                page = await context.new_page()
                await view(page, f"{base}/shop?way={way}", load, network)
                await page.close()
            await context.close()
        loads += [cold, warm]
    return loads


async def run(runs: int, throttle: bool) -> list[Load]:
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(
            secret="benchmark-secret-0123456789abcdef",
            store="memory://",
            audit=f"sqlite:///{scratch}/audit.db",
            sites={"demo": Site("demo", (f"http://127.0.0.1:{port}",))},
        )
        app = demo_app().asgi(settings)
        app.router.routes[:0] = peer_routes()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the demo server did not start")
            await asyncio.sleep(0.01)
        try:
            async with async_playwright() as playwright:
                browser = await launch(playwright)
                try:
                    network = SLOW_4G if throttle else UNTHROTTLED
                    return await measure(browser, f"http://127.0.0.1:{port}", runs, network)
                finally:
                    await browser.close()
        finally:
            server.should_exit = True
            await task


def table(loads: Sequence[Load]) -> str:
    lines = [
        "| widget | page view | bytes on the wire | launcher ready, median (ms) |",
        "|---|---|---:|---:|",
    ]
    for load in loads:
        lines.append(
            f"| {load.way} | {load.cache} | {statistics.median(load.wire_bytes):,.0f} "
            f"| {statistics.median(load.ready_ms):,.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="page loads per row (5)")
    parser.add_argument("--no-throttle", action="store_true", help="full loopback speed")
    args = parser.parse_args(argv)
    loads = asyncio.run(run(args.runs, not args.no_throttle))
    network = "no throttling" if args.no_throttle else "Slow 4G (150 ms, 1.6 Mbit/s down)"
    print(f"Chromium, {network}, {args.runs} loads per row\n")
    print(table(loads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
