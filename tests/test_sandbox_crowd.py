"""The sandbox holds a crowd (issue 9 point 13): 1,000 concurrent loopback connections are
all answered by a bounded number of threads, and a slow client is cut off by the read
timeout without holding up anyone else."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time

from cdp_tiktok.sandbox import SandboxServer
from cdp_tiktok.sandbox.server import MAX_CONNECTIONS
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from cdp_tiktok.tiktok.payload import ENDPOINT_PATH

PIXEL = "CSANDBOX0000000000000"
CROWD = 1000


def _request(n: int) -> bytes:
    event = {
        "event": "Purchase",
        "event_time": 1735689600,
        "event_id": f"crowd-{n}",
        "user": {"ip": "203.0.113.7"},
        "page": {"url": "https://shop.example/done"},
    }
    body = json.dumps({"event_source": "web", "event_source_id": PIXEL, "data": [event]})
    head = (
        f"POST {ENDPOINT_PATH} HTTP/1.1\r\nHost: sandbox\r\nContent-Type: application/json\r\n"
        f"Access-Token: {SANDBOX_ACCESS_TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body.encode()


async def _crowd(port: int, peak: list[int]) -> list[int]:
    """Open every connection first, then send every request, then read every answer."""
    streams = await asyncio.gather(
        *(asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 60) for _ in range(CROWD))
    )

    async def one(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        writer.write(_request(n))
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 60)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        peak[0] = max(peak[0], threading.active_count())
        writer.close()
        return int(status.split()[1])

    return await asyncio.gather(*(one(n, r, w) for n, (r, w) in enumerate(streams)))


def test_a_thousand_concurrent_connections_are_answered_by_bounded_threads() -> None:
    before = threading.active_count()
    peak = [before]
    with SandboxServer() as sandbox:
        port = int(sandbox.url.rsplit(":", 1)[1])
        statuses = asyncio.run(_crowd(port, peak))
        assert statuses == [200] * CROWD
        assert sandbox.stats().accepted_events == CROWD
    assert peak[0] <= before + MAX_CONNECTIONS + 2, peak


def test_a_slow_client_is_cut_off_and_does_not_hold_up_the_others() -> None:
    with SandboxServer(read_timeout=0.5) as sandbox:
        port = int(sandbox.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
            slow.sendall(_request(0)[:20])  # half a request line, then nothing
            with socket.create_connection(("127.0.0.1", port), timeout=30) as quick:
                quick.sendall(_request(1))
                assert quick.recv(100).startswith(b"HTTP/1.1 200")
            # the server gives up on the slow client: its connection ends (no answer
            # needed), well before this socket's own 30 s timeout
            leftover = b""
            while chunk := slow.recv(1000):
                leftover += chunk
            assert b"200" not in leftover
        assert sandbox.stats().accepted_events == 1


def test_the_sandbox_command_takes_a_read_timeout() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp_tiktok", "sandbox", "--read-timeout", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().strip().rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as silent:
            started = time.monotonic()
            assert silent.recv(1000) == b""  # closed by the server, not by this timeout
            assert time.monotonic() - started < 20
    finally:
        process.terminate()
        process.communicate(timeout=10)
