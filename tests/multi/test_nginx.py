"""The deployment guide's nginx configuration, run for real in front of two instances."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.multi.conftest import ROOT, Cluster, Instance
from tests.support import free_port, widget

NGINX = "/usr/sbin/nginx"


class Proxy:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"


@asynccontextmanager
async def nginx(tmp_path: Path, instances: list[Instance]) -> AsyncIterator[Proxy]:
    """deploy/nginx.conf with its upstream pointed at ``instances``, on a free port."""
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    servers = "".join(
        f"    server 127.0.0.1:{i.port} max_fails=1 fail_timeout=5s;\n" for i in instances
    )
    site, upstreams = re.subn(r"(    server 127\.0\.0\.1:\d+ [^\n]*\n)+", servers, site)
    port = free_port()
    site, listens = re.subn(r"listen 80;", f"listen 127.0.0.1:{port};", site)
    assert (upstreams, listens) == (1, 1), "deploy/nginx.conf changed shape"
    temp = tmp_path / "nginx"
    temp.mkdir()
    (temp / "signoff.conf").write_text(site)
    (temp / "nginx.conf").write_text(
        f"""
        worker_processes 1;
        pid {temp}/nginx.pid;
        error_log {temp}/error.log;
        events {{}}
        http {{
            access_log off;
            client_body_temp_path {temp}/body;
            proxy_temp_path {temp}/proxy;
            fastcgi_temp_path {temp}/fastcgi;
            uwsgi_temp_path {temp}/uwsgi;
            scgi_temp_path {temp}/scgi;
            include {temp}/signoff.conf;
        }}
        """
    )
    process = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(temp), "-c", str(temp / "nginx.conf"), "-g", "daemon off;"
    )
    proxy = Proxy(port)
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    if (await client.get(proxy.url + "/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield proxy
    finally:
        process.terminate()
        await process.wait()


async def test_widgets_through_nginx_survive_losing_an_instance(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b = await cluster.start(), await cluster.start()
    async with nginx(tmp_path, [a, b]) as proxy:
        # Page origin and Host are the proxy's, as for a page served through it.
        async with widget(proxy, origin=proxy.url) as w:  # type: ignore[arg-type]
            card = await w.open_card("slowly wipe disk")
            token = w.welcome["session_token"]
        # Round robin spreads sockets over both instances; each one works.
        for _ in range(4):
            async with widget(proxy, origin=proxy.url) as tab:  # type: ignore[arg-type]
                await tab.hello(session_token=token)
                assert (await tab.card("pending"))["card_id"] == card["card_id"]
        await a.kill()
        # nginx skips the dead instance; the other serves the session from Redis.
        async with widget(proxy, origin=proxy.url) as w:  # type: ignore[arg-type]
            await w.hello(session_token=token)
            await w.decide(await w.card("pending"))
            await w.update(card["card_id"], "done")
            await w.bot_says("result")
    assert cluster.runs() == ["wipe disk"]
