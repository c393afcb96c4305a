"""Take docs/widget.png: the demo page with a confirmation card, in headless Chromium.

Run: .venv/bin/python tools/screenshot.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.chromium import launch  # noqa: E402
from signoff.bots.demo import demo_app  # noqa: E402
from signoff.cli import demo_site  # noqa: E402
from tests.support import running, settings  # noqa: E402


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with running(demo_app(), settings(tmp)) as server, async_playwright() as pw:
            # The demo as `signoff demo` serves it: its greeting and things to try.
            server.app.state.runtime.sites["demo"] = demo_site("127.0.0.1", server.port)
            browser = await launch(pw)
            page = await browser.new_page(viewport={"width": 1200, "height": 800})
            await page.goto(server.url + "/demo")
            field = page.locator(".signoff-input")
            await field.fill("cancel order 1001")
            await field.press("Enter")
            await page.locator(".signoff-confirm").wait_for()
            await page.wait_for_timeout(400)  # let the entry animation settle
            await page.screenshot(path=str(ROOT / "docs" / "widget.png"))
            await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
