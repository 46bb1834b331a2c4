"""The outbox's depth for the intake's backlog check, read beside the pipeline.

Counting the outbox's records takes time that grows with the outbox (SQLite counts on an
index: about 3 ms per 100,000 records; a backend without such a count reads its
``stats``, a scan), so it is read on a thread of its own,
every :data:`DEPTH_CHECK_SECONDS` (less often when a count takes long: see
:data:`COUNTING_SHARE_INVERSE`), and the pipeline only looks at the last reading: the
pipeline never waits for a count, and SQLite counts without holding the interpreter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cdp_tiktok.delivery.outbox import Outbox

log = logging.getLogger("cdp_tiktok.ingest")

DEPTH_CHECK_SECONDS = 1.0
"""How often the outbox depth is read again for the backlog check."""
COUNTING_SHARE_INVERSE = 5
"""A count that takes longer waits this many times its duration before the next one, so
that counting a huge outbox takes at most a fifth of a core."""


def undelivered_count(outbox: Outbox) -> Callable[[], int]:
    """The cheapest count of ``outbox``'s undelivered records (pending and leased): its
    ``undelivered()`` where it has one (SQLite), else from its ``stats()``."""
    cheap: Callable[[], int] | None = getattr(outbox, "undelivered", None)
    if cheap is not None:
        return cheap

    def from_stats() -> int:
        stats = outbox.stats()
        return stats.pending + stats.leased

    return from_stats


class OutboxDepth:
    """The undelivered records (pending and leased) of the outbox, as last read by
    ``count`` (see :func:`undelivered_count`); ``None`` while the last reading failed
    (the store is unreadable)."""

    def __init__(self, count: Callable[[], int], every: float = DEPTH_CHECK_SECONDS) -> None:
        self._count = count
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
            self._depth = self._count()
        except Exception as exc:
            log.error("outbox count failed: %s", type(exc).__name__)
            self._depth = None
        return time.monotonic() - started
