"""The widget's socket taken down and brought back, in Chromium, as a network would."""

from __future__ import annotations

from playwright.async_api import Page, WebSocketRoute


class DroppableSocket:
    """Routes a page's widget socket through the test: ``drop()`` closes it and refuses
    the reconnects until ``restore()``."""

    def __init__(self) -> None:
        self.sockets: list[WebSocketRoute] = []
        self.offline = False

    @classmethod
    async def open(cls, page: Page, url: str) -> DroppableSocket:
        """``page`` gone to ``url``, its widget socket routed through a new one of these."""
        socket = cls()
        await page.route_web_socket("**/ws", socket._route)
        await page.goto(url)
        return socket

    async def _route(self, ws: WebSocketRoute) -> None:
        if self.offline:
            await ws.close(code=1011, reason="offline")
            return
        ws.connect_to_server()
        self.sockets.append(ws)

    async def drop(self) -> None:
        self.offline = True
        await self.sockets[-1].close(code=1011, reason="gone")

    def restore(self) -> None:
        self.offline = False
