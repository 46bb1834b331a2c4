"""The sandbox in a process of its own, tied to its parent (``send --sandbox``).

``send --sandbox`` maps and delivers in one process; serving the sandbox there too would
put its request parsing and validation on the same interpreter (one core, one GIL).
:class:`SandboxProcess` starts ``python -m cdp_tiktok.sandbox.child``: the child prints
its base URL on stdout, keeps no events in memory (``send`` reads only the counters,
over ``GET /sandbox/stats``) and serves until its standard input closes, which happens
when the parent stops it and also when the parent dies, so no sandbox outlives ``send``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.request
from types import TracebackType
from typing import IO

from cdp_tiktok.sandbox.state import SandboxStats
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN

START_TIMEOUT = 30.0
"""Seconds the parent waits for the child's URL."""


class SandboxProcess:
    """A sandbox served by a child process; a context manager (start, stop)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The child's base URL, e.g. ``http://127.0.0.1:54321`` (valid once started)."""
        if self._url is None:
            raise RuntimeError("the sandbox is not started")
        return self._url

    def start(self) -> SandboxProcess:
        """Start the child and wait for its URL; raises ``RuntimeError`` if it fails."""
        process = subprocess.Popen(
            [sys.executable, "-m", "cdp_tiktok.sandbox.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._process = process
        assert process.stdout is not None
        line = process.stdout.readline().decode("ascii", "replace").strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError("the sandbox process did not start")
        self._url = line
        return self

    def stats(self) -> SandboxStats:
        """The child's counters (``GET /sandbox/stats``)."""
        with urllib.request.urlopen(self.url + "/sandbox/stats", timeout=30) as answer:
            counts = json.loads(answer.read())
        return SandboxStats(**{name: int(counts[name]) for name in SandboxStats().as_dict()})

    def stop(self) -> None:
        """Close the child's standard input and wait for it to exit."""
        process, self._process = self._process, None
        if process is None:
            return
        _close(process.stdin)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _close(process.stdout)

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _close(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()


def main() -> None:
    """Serve a sandbox on a free loopback port until standard input closes."""
    from cdp_tiktok.sandbox.server import SandboxServer

    # Ctrl-C reaches the whole process group: the parent decides when the child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN, memory_limit=0) as server:
        sys.stdout.write(server.url + "\n")
        sys.stdout.flush()
        while sys.stdin.buffer.read(65536):
            pass


if __name__ == "__main__":
    main()
