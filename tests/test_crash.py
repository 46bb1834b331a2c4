"""Crash safety: a worker killed with SIGKILL mid-delivery loses nothing.

A worker process drains a SQLite outbox of 5,000 events to a slow sandbox and is killed
once the sandbox has recorded some but not all events; a second worker, after the first
one's leases expire, delivers the rest. At-least-once: every event reaches the sandbox
(some possibly twice), none is dead-lettered, the outbox ends empty.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cdp_tiktok.backends import open_outbox
from cdp_tiktok.events import OutgoingEvent
from cdp_tiktok.sandbox.server import SandboxServer
from tests.helpers_delivery import key_for, mapped_event

ROOT = Path(__file__).resolve().parent.parent
N = 5000
LEASE = 1.5


def worker(path: Path, endpoint: str, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers_delivery.deliver_worker", str(path), endpoint,
         str(LEASE), name],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_a_killed_worker_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = open_outbox(f"sqlite:///{path}")
    outbox.enqueue([OutgoingEvent(key_for(), mapped_event(i)) for i in range(N)])
    outbox.close()
    with SandboxServer(latency_ms=60) as sandbox:
        first = worker(path, sandbox.url, "first")
        deadline = time.monotonic() + 60
        while sandbox.stats().accepted_events < N // 5:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first worker made no progress"
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL
        at_kill = sandbox.stats().accepted_events
        assert 0 < at_kill < N

        second = worker(path, sandbox.url, "second")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err

        recorded = {record["data"]["event_id"] for record in sandbox.events()}
    assert recorded == {f"evt-{i:07d}" for i in range(N)}
    assert "dead=0" in out
    outbox = open_outbox(f"sqlite:///{path}")
    stats = outbox.stats()
    assert (stats.pending, stats.leased, stats.held, stats.dead) == (0, 0, 0, 0)
    outbox.close()
