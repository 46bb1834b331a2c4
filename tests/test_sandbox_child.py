"""The sandbox ``send --sandbox`` runs in a child process: it answers like the in-process
one, reports its counters, and never outlives its parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from cdp_tiktok.sandbox.child import SandboxProcess
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from cdp_tiktok.tiktok.payload import ENDPOINT_PATH
from tests.test_sandbox import body, event


def _post(url: str, events: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(
        url + ENDPOINT_PATH,
        content=json.dumps(body(events)).encode(),
        headers={"Content-Type": "application/json", "Access-Token": SANDBOX_ACCESS_TOKEN},
        timeout=10,
    )


def test_child_sandbox_accepts_counts_duplicates_and_keeps_no_events() -> None:
    with SandboxProcess() as sandbox:
        assert _post(sandbox.url, [event(1), event(2)]).json()["code"] == 0
        assert _post(sandbox.url, [event(2), event(3)]).json()["code"] == 0
        stats = sandbox.stats()
        kept = httpx.get(sandbox.url + "/sandbox/events", timeout=10).json()
    assert (stats.accepted_requests, stats.accepted_events, stats.duplicates) == (2, 4, 1)
    assert kept == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_child_sandbox_exits_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "from cdp_tiktok.sandbox.child import SandboxProcess\n"
            "s = SandboxProcess().start()\n"
            "print(s._process.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
