"""The outbox's depth for the intake's backlog check, read beside the pipeline.

Counting the outbox's records takes time that grows with the outbox (a scan: tens of
milliseconds at tens of thousands of records), so it is read on a thread of its own,
every :data:`DEPTH_CHECK_SECONDS` (less often when a count takes long: see
:data:`COUNTING_SHARE_INVERSE`), and the pipeline only looks at the last reading: the
pipeline never waits for a count, and SQLite counts without holding the interpreter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cdp_tiktok.delivery.outbox import OutboxStats

log = logging.getLogger("cdp_tiktok.ingest")

DEPTH_CHECK_SECONDS = 1.0
"""How often the outbox depth is read again for the backlog check."""
COUNTING_SHARE_INVERSE = 5
"""A count that takes longer waits this many times its duration before the next one, so
that counting a huge outbox takes at most a fifth of a core."""


class OutboxDepth:
    """The undelivered records (pending and leased) of the outbox, as last read by
    ``stats``; ``None`` while the last reading failed (the store is unreadable)."""

    def __init__(
        self, stats: Callable[[], OutboxStats], every: float = DEPTH_CHECK_SECONDS
    ) -> None:
        self._stats = stats
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._depth: int | None = None

    def start(self) -> None:
        """Read the depth now (so the first request is checked against a real reading),
        then keep reading it on a daemon thread until :meth:`stop`."""
        self._read()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cdp-tiktok-depth", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (returns once the thread ended)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def current(self) -> int | None:
        """The last reading: a record count, or ``None`` when it failed."""
        return self._depth

    def _run(self) -> None:
        took = 0.0
        while not self._stop.wait(max(self._every, took * COUNTING_SHARE_INVERSE)):
            took = self._read()

    def _read(self) -> float:
        started = time.monotonic()
        try:
            stats = self._stats()
        except Exception as exc:
            log.error("outbox stats failed: %s", type(exc).__name__)
            self._depth = None
        else:
            self._depth = stats.pending + stats.leased
        return time.monotonic() - started
