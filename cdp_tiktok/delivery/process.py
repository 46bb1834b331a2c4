"""Enqueueing and delivery in a process of their own (``send``).

``send`` maps on one core; enqueueing and delivering in the same interpreter would share
its GIL. :class:`DeliveryProcess` forks a child that, on its own outbox connections,
enqueues the chunks of events the parent hands it (:meth:`DeliveryProcess.enqueue`) and
delivers them while the parent still maps. The outbox is the hand-off to delivery: an
event is durable before it can be claimed, and a crash of either process loses nothing
acknowledged (unsettled leases expire; an idempotent re-run sends the rest).

The child first streams (``run(drain=False)``) until the parent says the input ended,
then drains (``run(drain=True)``) and reports. One pipe joins them. Parent to child, in
order: ``("enqueue", [Prepared, ...], dedup_seconds)`` (one chunk, stored in one
transaction), ``"end"`` (input ended: drain, then report) or ``"stop"`` (interrupted:
finish the requests in flight, release the rest, report); the pipe closing, when the
parent dies, means stop too. A chunk handed over before ``"end"`` is enqueued before the
drain starts. The parent writes a chunk only once the child has stored the one before,
and holds Ctrl-C during that write, so no half message is left in the pipe (a message
the child cannot read stops it all the same). Child to parent: ``("enqueued", skipped)``
per chunk, or once ``("enqueue-error", message, exit_code)`` (then later chunks are
dropped, never acknowledged, and delivery stops), ``("progress", DeliveryProgress)``
(cumulative over its runs), ``("wait", text)``, then exactly one ``("report",
DeliveryReport)`` or ``("error", message, exit_code)``: a failure described by the
parent's ``describe`` (the command's ``Error:`` sentence), raised in the parent as
:class:`DeliveryFailed`.

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
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from cdp_tiktok.delivery.outbox import StoredEvent, stored_event
from cdp_tiktok.delivery.worker import DeliveryProgress, DeliveryReport
from cdp_tiktok.events import BatchKey, OutgoingEvent

if TYPE_CHECKING:
    from cdp_tiktok.delivery.outbox import Outbox
    from cdp_tiktok.delivery.worker import Deliverer

OpenOutbox = Callable[[], "Outbox"]
Prepared = tuple[BatchKey, str, str | None, str | None]
"""An event as :meth:`DeliveryProcess.enqueue` takes it (made by :func:`prepare`): the
fields of a :class:`~cdp_tiktok.delivery.outbox.StoredEvent`."""
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
    exit status the command prints. ``on_progress``, ``on_wait`` and ``on_enqueued`` (the
    number of events of a chunk skipped as already pending or sent) are called on a
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
        on_enqueued: Callable[[int], None] | None = None,
    ) -> None:
        self._open = open_outbox
        self._build = build
        self._describe = describe
        self._on_progress = on_progress
        self._on_wait = on_wait
        self._on_enqueued = on_enqueued
        self._process: Any = None
        self._conn: Connection | None = None
        self._reader: threading.Thread | None = None
        self._outcome: tuple[Any, ...] | None = None
        self._enqueue_error: DeliveryFailed | None = None
        # chunks handed over, chunks the child has stored; the reader notifies
        self._ready = threading.Condition()
        self._handed = self._stored = 0
        self._listening = True

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
                elif kind == "enqueued":
                    if self._on_enqueued is not None:
                        self._on_enqueued(message[1])
                    with self._ready:
                        self._stored += 1
                        self._ready.notify()
                elif kind == "enqueue-error":
                    with self._ready:
                        self._enqueue_error = DeliveryFailed(message[1], message[2])
                        self._ready.notify()
                elif kind == "wait" and self._on_wait is not None:
                    self._on_wait(message[1])
                elif kind in ("report", "error"):
                    self._outcome = message
                    return
        except (EOFError, OSError):
            return
        finally:
            with self._ready:
                self._listening = False
                self._ready.notify()

    def enqueue(self, chunk: list[Prepared], dedup_seconds: float = 0.0) -> None:
        """Hand a chunk of events (each made by :func:`prepare`) to the child, which
        stores it in one transaction, after every chunk handed before it (idempotently
        with ``dedup_seconds``, as :meth:`~cdp_tiktok.delivery.outbox.Outbox.enqueue`).

        Waits (Ctrl-C interrupts the wait) until the child has stored the chunk before,
        so that it is reading when this one is written: the write is then quick, and
        Ctrl-C is held only during it. Raises :class:`DeliveryFailed` when an earlier
        chunk failed to enqueue in the child (later chunks are dropped there) or the
        child has ended.
        """
        with self._ready:
            while self._stored < self._handed and self._enqueue_error is None and self._listening:
                self._ready.wait(1.0)
        self._raise_enqueue_error()
        try:
            assert self._conn is not None
            with _whole_message():
                self._conn.send(("enqueue", chunk, dedup_seconds))
        except (OSError, ValueError):  # the child is gone: its last words say why
            raise self._ended_failure() from None
        self._handed += 1

    def _raise_enqueue_error(self) -> None:
        if self._enqueue_error is not None:
            raise self._enqueue_error

    def _ended_failure(self) -> DeliveryFailed:
        assert self._process is not None and self._reader is not None
        self._reader.join(5.0)  # the child's last words, if it had any
        if self._enqueue_error is not None:
            return self._enqueue_error
        outcome = self._outcome
        if outcome is not None and outcome[0] == "error":
            return DeliveryFailed(outcome[1], outcome[2])
        self._process.join(5.0)
        code = self._process.exitcode
        return DeliveryFailed(
            f"the delivery process ended without a report (exit status {code}); the "
            "events it stored stay in the outbox (cdp-tiktok outbox drain sends them), and "
            "running send again stores the rest (what is stored already is skipped)",
            1,
        )

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
        """Tell the child the input ended; wait for it to enqueue what it was handed and
        drain the outbox; its report. Raises :class:`DeliveryFailed` for a chunk that
        failed to enqueue, a failure of delivery, or the child's unexpected end."""
        self._send("end")
        outcome = self._wait()
        self._raise_enqueue_error()
        if outcome is None:
            raise self._ended_failure()
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


@contextlib.contextmanager
def _whole_message() -> Iterator[None]:
    """Hold off Ctrl-C (SIGINT) while a message is written, on the main thread: raised
    in the middle of a large write, it would leave half a message in the pipe and the
    child could read no word after it; it is raised as soon as the write is done (which
    is quick: :meth:`DeliveryProcess.enqueue` writes only to a child that is reading)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _post(conn: Connection, lock: threading.Lock, message: tuple[Any, ...]) -> None:
    with lock, contextlib.suppress(OSError, ValueError):  # the parent is gone: EOF stops us
        conn.send(message)


def _child_main(conn: Connection, parent_end: Connection, open_outbox: OpenOutbox,
                build: BuildDeliverer, describe: Describe) -> None:  # fmt: skip
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent_end.close()  # else the pipe never reads as closed when the parent dies
    ended, stop = threading.Event(), threading.Event()
    lock = threading.Lock()

    writer = _ChunkWriter(open_outbox, describe)

    def listen() -> None:
        try:
            while (message := conn.recv()) != "stop":
                if message == "end":
                    ended.set()
                elif not writer.failed:  # after a failure, chunks are dropped
                    _post(conn, lock, writer.write(message[1], message[2]))
                    if writer.failed:
                        stop.set()  # the command fails: delivery stops too
                        ended.set()
        except Exception:  # the pipe closed, or a message came cut short or garbled
            pass  # either way the parent is gone or gave up: stop
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
            try:
                outbox.close()
            finally:
                writer.close()
    except BaseException as exc:
        message, code = describe(exc)
        _post(conn, lock, ("error", message, code))
    else:
        _post(conn, lock, ("report", report))
    finally:
        conn.close()


def prepare(event: OutgoingEvent) -> Prepared:
    """``event`` as :meth:`DeliveryProcess.enqueue` takes it: the fields of its
    :func:`~cdp_tiktok.delivery.outbox.stored_event` (encoded as the outbox stores it,
    so an event that is not JSON raises ``ValueError`` or ``TypeError`` here, and the
    child stores the text without decoding it). Small and without containers, so a chunk
    waiting to be handed over costs the garbage collector nothing."""
    stored = stored_event(event)
    return stored.key, stored.data_json, stored.event_id, stored.identity


class _ChunkWriter:
    """The child's enqueueing: its own outbox connection, opened at the first chunk."""

    def __init__(self, open_outbox: OpenOutbox, describe: Describe) -> None:
        self._open = open_outbox
        self._describe = describe
        self._outbox: Outbox | None = None
        self.failed = False

    def write(self, chunk: list[Prepared], dedup_seconds: float) -> tuple[Any, ...]:
        """Enqueue one chunk; the message for the parent: the count skipped, or the error
        (then :attr:`failed` is set)."""
        try:
            if self._outbox is None:
                self._outbox = self._open()
            events = [StoredEvent(*fields) for fields in chunk]
            stored = self._outbox.enqueue(events, dedup_seconds=dedup_seconds)
        except BaseException as exc:
            self.failed = True
            message, code = self._describe(exc)
            return ("enqueue-error", message, code)
        return ("enqueued", len(events) - len(stored))

    def close(self) -> None:
        """Close the connection (every chunk written is durable already)."""
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            outbox.close()
