"""Helpers for tests that run ``cdp-tiktok worker`` processes against a sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN

DEADLINE = 90.0


def worker_process(
    url: str, endpoint: str, settings: Path, *extra: str, stderr: int | None = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """``python -m cdp_tiktok worker`` on ``url``, sending to ``endpoint`` with the sandbox
    token; the environment's ``CDP_TIKTOK_*`` variables are not passed on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_TIKTOK_")}
    return subprocess.Popen(
        [
            sys.executable, "-m", "cdp_tiktok", "worker", "--outbox", url,
            "--endpoint", endpoint, "--access-token", SANDBOX_ACCESS_TOKEN,
            "--settings", str(settings), *extra,
        ],
        env=env,
        stderr=stderr,
    )  # fmt: skip


def until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)
