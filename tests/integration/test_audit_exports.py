"""CSV downloads that clients stop reading, over real HTTP, on SQLite and PostgreSQL.

Each client sends its request, reads the answer's head and then nothing more. Exports run
on a pool of their own, a few at a time: the rest are refused at once with a Retry-After,
cards still open while the stalled ones hang, and a stalled one is cut off after the idle
timeout, its connection and its place given back.
"""

from __future__ import annotations

import asyncio
import csv
import io
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from signoff.audit import AuditLog
from signoff.demo import demo_app
from tests.audit.test_audit_contract import entry
from tests.integration.test_dashboard import PASSWORD, teammate
from tests.support import Server, running, settings, widget

ADMIN_KEY = "bootstrap-admin-key-0123456789abcdef"
EXPORTS = 2
IDLE = 3.0  # seconds an export may go unread: longer than asking for all the downloads
# Rows of about 1 KB: more than the sockets' buffers hold between the two ends, and more
# than one read from the database, so a download stalls while it holds a connection.
ROWS = 6000
STALLED = 16  # downloads asked for: more than the exports' pool, and the writers' pool too


@pytest.fixture
async def server(tmp_path: Any, audit_url: str) -> AsyncIterator[Server]:
    config = settings(
        tmp_path,
        audit=audit_url,
        admin_key=ADMIN_KEY,
        audit_exports=EXPORTS,
        audit_export_idle_timeout=IDLE,
    )
    async with running(demo_app(), config) as server:
        audit: AuditLog = server.app.state.runtime.audit
        for _ in range(ROWS // 1000):
            await audit.record(*(entry(f"a{n}", params={"blob": "x" * 900}) for n in range(1000)))
        yield server


class Download:
    """A raw HTTP client that asks for the CSV, reads the answer's head, then stops."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.head = ""

    @classmethod
    async def start(cls, server: Server) -> Download:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        writer.write(
            b"GET /api/v1/audit?format=csv HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n\r\n"
        )
        await writer.drain()
        download = cls(reader, writer)
        async with asyncio.timeout(10):
            download.head = (await reader.readuntil(b"\r\n\r\n")).decode()
        return download

    @property
    def status(self) -> int:
        return int(self.head.split(" ", 2)[1])

    async def rest(self) -> bytes:
        """Everything up to the end of the connection, read now."""
        async with asyncio.timeout(15):
            return await self.reader.read(-1)

    def close(self) -> None:
        self.writer.close()


async def exports_running_after_cut_off(audit: AuditLog) -> int:
    """How many exports run once the stalled ones have had time to be cut off."""
    deadline = asyncio.get_running_loop().time() + IDLE + 10
    while audit.exports.running:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    return audit.exports.running


async def test_stalled_downloads_take_only_the_exports_connections_and_are_cut_off(
    server: Server,
) -> None:
    audit: AuditLog = server.app.state.runtime.audit
    downloads = [await Download.start(server) for _ in range(STALLED)]
    try:
        assert [d.status for d in downloads] == [200] * EXPORTS + [503] * (STALLED - EXPORTS)
        assert all("retry-after: 10" in d.head.lower() for d in downloads[EXPORTS:])
        assert audit.exports.running == EXPORTS
        # Cards still open and end: their audit rows are written at once.
        async with asyncio.timeout(5), widget(server) as w:
            await w.hello()
            await w.say("cancel order 1001")
            card = await w.card("pending")
            await w.decide(card)
            await w.update(card["card_id"], "done")
        # The stalled downloads are cut off unfinished, their places given back.
        assert await exports_running_after_cut_off(audit) == 0
        for stalled in downloads[:EXPORTS]:
            body = await stalled.rest()
            assert not body.endswith(b"0\r\n\r\n")  # no last chunk: not the whole file
    finally:
        for download in downloads:
            download.close()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        whole = await http.get(
            "/api/v1/audit",
            params={"format": "csv"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
    assert whole.status_code == 200
    records = list(csv.reader(io.StringIO(whole.text, newline="")))
    assert len(records) == 1 + ROWS + 3  # the header, the rows, the card's


async def test_the_dashboards_export_is_refused_with_a_retry_after_when_all_run(
    server: Server,
) -> None:
    await server.app.state.runtime.accounts.create_teammate("lena", PASSWORD, ["support-lead"])
    async with teammate(server, "lena") as lena:
        downloads = [await Download.start(server) for _ in range(EXPORTS)]
        try:
            busy = await lena.http.get("/dashboard/audit.csv")
        finally:
            for download in downloads:
                download.close()
    assert (busy.status_code, busy.headers["retry-after"]) == (503, "10")
    assert f"{EXPORTS} audit exports are running" in busy.text
