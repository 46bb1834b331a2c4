"""Delivery in a process of its own, handed its work by the durable outbox (``send``).

``send`` maps and enqueues on one core; delivering in the same interpreter would share
its GIL. :class:`DeliveryProcess` forks a child that delivers from its own outbox
connection while the parent still enqueues. The outbox is the hand-off: an event is
durable before the child can see it, and a crash of either process loses nothing
(unsettled leases expire; the next run sends the rest).

The child first streams (``run(drain=False)``) until the parent says the input ended,
then drains (``run(drain=True)``) and reports. One pipe joins them. Parent to child:
``"end"`` (input ended: drain, then report) or ``"stop"`` (interrupted: finish the
requests in flight, release the rest, report); the pipe closing, when the parent dies,
means stop too. Child to parent: ``("progress", DeliveryProgress)`` (cumulative over its
runs), ``("wait", text)``, then exactly one ``("report", DeliveryReport)`` or ``("error",
message, exit_code)``: a failure described by the parent's ``describe`` (the command's
``Error:`` sentence), raised in the parent as :class:`DeliveryFailed`.

The child is a fork (it inherits the host, its plugins and the settings as they are);
it ignores SIGINT, because Ctrl-C reaches the whole process group and the parent decides
(it sends ``"stop"``), and it leaves with ``os._exit``, so nothing inherited (the
parent's outbox and identity connections) is touched or closed there.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import signal
import threading
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from cdp_tiktok.delivery.worker import DeliveryProgress, DeliveryReport

if TYPE_CHECKING:
    from cdp_tiktok.delivery.outbox import Outbox
    from cdp_tiktok.delivery.worker import Deliverer

OpenOutbox = Callable[[], "Outbox"]
BuildDeliverer = Callable[["Outbox", Callable[[str], None]], "Deliverer"]
Describe = Callable[[BaseException], tuple[str, int]]


class DeliveryFailed(Exception):
    """The delivery process failed; ``message`` and ``exit_code`` are what the command
    reports (one ``Error:`` line)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def merge_reports(first: DeliveryReport | None, second: DeliveryReport) -> DeliveryReport:
    """One report for a streaming run followed by a draining run (counts added)."""
    if first is None:
        return second
    reasons = Counter(first.dead_reasons)
    reasons.update(second.dead_reasons)
    return DeliveryReport(
        delivered=first.delivered + second.delivered,
        dead=first.dead + second.dead,
        retried=first.retried + second.retried,
        requests=first.requests + second.requests,
        stopped={**first.stopped, **second.stopped},
        elapsed=first.elapsed + second.elapsed,
        dead_reasons=dict(reasons),
    )


class DeliveryProcess:
    """A forked child that delivers from the outbox until the parent's input ends.

    ``open_outbox`` opens the child's own outbox connection; ``build`` makes its
    :class:`~cdp_tiktok.delivery.worker.Deliverer` (given the connection and a callback
    for waiting notices); ``describe`` turns a failure in the child into the sentence and
    exit status the command prints. ``on_progress`` and ``on_wait`` are called on a
    thread of the parent that reads the pipe.

    Guarantees: :meth:`finish` returns the child's exact report (the counts of both its
    runs) or raises :class:`DeliveryFailed` (the child's error, or its unexpected end);
    :meth:`stop` makes the child finish its requests in flight and release its other
    leases, then waits for it; no child outlives its parent (the pipe closes).
    """

    def __init__(
        self,
        open_outbox: OpenOutbox,
        build: BuildDeliverer,
        describe: Describe,
        *,
        on_progress: Callable[[DeliveryProgress], None] | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self._open = open_outbox
        self._build = build
        self._describe = describe
        self._on_progress = on_progress
        self._on_wait = on_wait
        self._process: Any = None
        self._conn: Connection | None = None
        self._reader: threading.Thread | None = None
        self._outcome: tuple[Any, ...] | None = None

    def start(self) -> DeliveryProcess:
        """Fork the child; it starts delivering at once."""
        context = multiprocessing.get_context("fork")
        parent, child = context.Pipe()
        process = context.Process(
            target=_child_main,
            args=(child, parent, self._open, self._build, self._describe),
            name="cdp-tiktok-deliver",
            daemon=True,
        )
        # Frozen objects are never examined by the child's collector: it frees nothing
        # inherited (no finalizer of the parent's connections runs there), and shares
        # more memory with the parent.
        gc.freeze()
        try:
            process.start()
        finally:
            gc.unfreeze()
        child.close()
        self._process, self._conn = process, parent
        self._reader = threading.Thread(target=self._read, name="cdp-tiktok-deliver-pipe")
        self._reader.daemon = True
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._conn is not None
        try:
            while True:
                message = self._conn.recv()
                kind = message[0]
                if kind == "progress" and self._on_progress is not None:
                    self._on_progress(message[1])
                elif kind == "wait" and self._on_wait is not None:
                    self._on_wait(message[1])
                elif kind in ("report", "error"):
                    self._outcome = message
                    return
        except (EOFError, OSError):
            return

    def _send(self, word: str) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError, ValueError):  # the child is gone already
                self._conn.send(word)

    def _wait(self) -> tuple[Any, ...] | None:
        assert self._reader is not None and self._process is not None
        self._reader.join()
        self._process.join()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return self._outcome

    def finish(self) -> DeliveryReport:
        """Tell the child the input ended; wait for it to drain the outbox; its report."""
        self._send("end")
        outcome = self._wait()
        if outcome is None:
            code = self._process.exitcode
            raise DeliveryFailed(
                f"the delivery process ended without a report (exit status {code}); the "
                "events stay in the outbox: cdp-tiktok outbox drain sends them",
                1,
            )
        if outcome[0] == "error":
            raise DeliveryFailed(outcome[1], outcome[2])
        report: DeliveryReport = outcome[1]
        return report

    def stop(self) -> None:
        """Make the child stop (requests in flight are finished and settled) and wait."""
        if self._process is None:
            return
        self._send("stop")
        self._wait()


class _Cumulative:
    """Forwards a run's progress to the parent, counting earlier runs in."""

    def __init__(self, conn: Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock
        self.base: DeliveryReport | None = None

    def __call__(self, state: DeliveryProgress) -> None:
        base = self.base
        if base is not None:
            state = DeliveryProgress(
                delivered=base.delivered + state.delivered,
                dead=base.dead + state.dead,
                retried=base.retried + state.retried,
                requests=base.requests + state.requests,
                pending=state.pending,
                elapsed=base.elapsed + state.elapsed,
            )
        _post(self._conn, self._lock, ("progress", state))


def _post(conn: Connection, lock: threading.Lock, message: tuple[Any, ...]) -> None:
    with lock, contextlib.suppress(OSError, ValueError):  # the parent is gone: EOF stops us
        conn.send(message)


def _child_main(conn: Connection, parent_end: Connection, open_outbox: OpenOutbox,
                build: BuildDeliverer, describe: Describe) -> None:  # fmt: skip
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent_end.close()  # else the pipe never reads as closed when the parent dies
    ended, stop = threading.Event(), threading.Event()
    lock = threading.Lock()

    def listen() -> None:
        try:
            while conn.recv() == "end":
                ended.set()
        except (EOFError, OSError):
            pass
        stop.set()
        ended.set()

    threading.Thread(target=listen, name="cdp-tiktok-deliver-listen", daemon=True).start()
    progress = _Cumulative(conn, lock)
    try:
        outbox = open_outbox()
        try:
            deliverer = build(outbox, lambda text: _post(conn, lock, ("wait", text)))
            report = deliverer.run(drain=False, stop=ended, on_progress=progress)
            if not stop.is_set():
                progress.base = report
                final = deliverer.run(drain=True, stop=stop, on_progress=progress)
                report = merge_reports(report, final)
        finally:
            outbox.close()
    except BaseException as exc:
        message, code = describe(exc)
        _post(conn, lock, ("error", message, code))
    else:
        _post(conn, lock, ("report", report))
    finally:
        conn.close()
