"""``cdp-tiktok serve`` as a real process: killed with SIGKILL right after answering
success, nothing it acknowledged is lost; SIGTERM stops it cleanly."""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cdp_tiktok.backends import open_outbox
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN, SANDBOX_PIXEL_CODE
from tests.helpers_service import PAGE_URL, WRITE_KEY
from tests.test_ingest_clients import wait_for_events

BANNER = re.compile(r"listening on (http://\S+)")


@contextmanager
def serve_process(
    tmp_path: Path,
    endpoint: str,
    *,
    outbox: str | None = None,
    identity: str | None = None,
    options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A ``cdp-tiktok serve`` subprocess and its URL (read from its banner line); its
    outbox and identity store are SQLite files in ``tmp_path`` unless urls are given;
    ``options`` and ``env`` are added to its command line and environment."""
    command = [
        sys.executable,
        "-m",
        "cdp_tiktok",
        "serve",
        "--port",
        "0",
        "--write-key",
        f"web={WRITE_KEY}",
        "--endpoint",
        endpoint,
        "--access-token",
        SANDBOX_ACCESS_TOKEN,
        "--pixel-code",
        SANDBOX_PIXEL_CODE,
        "--outbox",
        outbox or f"sqlite:///{tmp_path / 'outbox.db'}",
        "--identity",
        identity or f"sqlite:///{tmp_path / 'identity.db'}",
        "--log-level",
        "warning",
        *options,
    ]
    # A short lease, so the records the killed process had claimed come back quickly.
    env = {
        **os.environ,
        "CDP_TIKTOK_DEFAULT_PAGE_URL": PAGE_URL,
        "CDP_TIKTOK_LEASE_SECONDS": "4",
        "CDP_TIKTOK_TIMEOUT_SECONDS": "2",
        **(env or {}),
    }
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    stderr = process.stderr
    threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=30)
            match = BANNER.search(line)
            if match:
                break
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.mark.slow
def test_kill_9_after_success_loses_nothing_and_repeats_keep_event_id(tmp_path: Path) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
    total = 300
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN, latency_ms=500) as sandbox:
        with serve_process(tmp_path, sandbox.url) as (process, url):
            for start in range(0, total, 100):
                batch = [
                    {
                        "type": "track",
                        "userId": f"user-{i}",
                        "event": "Order Completed",
                        "messageId": f"crash-{i}",
                        "properties": {"order_id": f"o-{i}", "revenue": 1, "currency": "USD"},
                    }
                    for i in range(start, start + 100)
                ]
                answer = httpx.post(
                    url + "/v1/batch", content=json.dumps({"batch": batch}), headers=auth
                )
                assert answer.json() == {"success": True}
            # Kill while the first delivery request is in flight (the sandbox delays its
            # answer): those records are claimed but never settled.
            deadline = time.monotonic() + 30
            while sandbox.stats().requests == 0:
                assert time.monotonic() < deadline, "the worker never sent"
                time.sleep(0.005)
            assert sandbox.stats().accepted_events == 0
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        with serve_process(tmp_path, sandbox.url) as (process, url):
            # The killed process's records come back when their lease expires; wait until
            # the new process has settled every one of them as delivered.
            outbox = open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
            try:
                deadline = time.monotonic() + 60
                while outbox.stats().delivered < total:
                    assert time.monotonic() < deadline, f"undelivered: {outbox.stats()}"
                    time.sleep(0.05)
            finally:
                outbox.close()
            events = wait_for_events(sandbox, total)
            ids = Counter(event["event_id"] for event in events)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
            duplicates = sandbox.stats().duplicates
    assert set(ids) == {f"crash-{i}" for i in range(total)}
    # The batch in flight at the kill reached TikTok and was sent again after the restart
    # (its lease expired): each repeat carries the same event_id, so TikTok de-duplicates.
    assert duplicates > 0
    assert sum(ids.values()) == total + duplicates
    assert all(count <= 2 for count in ids.values())
