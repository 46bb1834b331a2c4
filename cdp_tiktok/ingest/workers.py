"""``serve --workers N``: N uvicorn worker processes on one listening socket.

Each worker process builds its own service (host, compiled mappings, identity store,
outbox connections, pipeline thread, embedded delivery worker) when its server starts:
nothing that holds a connection or a thread crosses a process boundary. The supervisor
is uvicorn's (it restarts a worker that dies). Metrics use prometheus-client's
multiprocess mode: every process writes its counters to files in one directory, and a
scrape answered by any process sums them all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdp_tiktok.ingest.config import IntakeConfig
from cdp_tiktok.settings import TikTokSettings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    """The directory the worker processes share for their metrics, named in the
    environment (inherited by the workers) for as long as the block runs.

    A directory given in ``PROMETHEUS_MULTIPROC_DIR`` is used and emptied of the files of
    an earlier run (counters start at zero, as they do with one process); otherwise a new
    temporary one is made and removed at the end.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="cdp-tiktok-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def forget_process(directory: Path, pid: int) -> None:
    """Remove the metric files of process ``pid`` (the supervisor's start-up check, which
    served nothing), so that only serving processes appear in the sums."""
    for path in directory.glob(f"*_{pid}.db"):
        path.unlink()


@dataclass
class ServiceApp:
    """A picklable ASGI application that builds the intake in the process that runs it.

    The service is opened when the server's lifespan starts and closed when it ends, so
    each worker process owns its stores and threads. ``prepare`` runs first (logging).
    """

    settings: TikTokSettings
    deliveries: Mapping[str, TikTokSettings]
    config: IntakeConfig
    worker: bool
    prepare: Callable[[], None] | None = None
    _app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self._app(scope, receive, send)

    async def _lifespan(self, scope: Any, receive: Any, send: Any) -> None:
        from cdp_tiktok.ingest.app import create_app
        from cdp_tiktok.ingest.gc_tuning import tune_for_serving
        from cdp_tiktok.ingest.service import open_service

        if self.prepare is not None:
            self.prepare()
        with contextlib.ExitStack() as stack:
            service = open_service(
                self.settings,
                self.deliveries,
                self.config,
                stack,
                worker=self.worker,
                metrics_dir=os.environ[MULTIPROC_ENV],
            )
            service.on_start.append(tune_for_serving)
            self._app = create_app(service)
            await self._app(scope, receive, send)


BALANCED = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")
"""Whether the kernel balances connections over the workers' own listening sockets
(Linux's ``SO_REUSEPORT``); elsewhere the workers share one socket."""


def reuse_port(sock: socket.socket) -> None:
    """Let other sockets of this user bind ``sock``'s address too (before it is bound)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def _worker_socket(shared: socket.socket) -> socket.socket:
    """A new socket on ``shared``'s address, for one worker process to listen on."""
    sock = socket.socket(shared.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reuse_port(sock)
        sock.bind(shared.getsockname())
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run_workers(
    app: ServiceApp,
    sock: socket.socket,
    workers: int,
    uvicorn_options: Mapping[str, Any],
    on_ready: Callable[[], None],
) -> None:
    """Serve ``app`` from ``workers`` processes on ``sock`` until SIGTERM or SIGINT (inside
    :func:`metrics_directory`, so that the processes find it); call
    ``on_ready`` once every worker has started. Returns after all workers stopped (each
    finishes its requests and commits first).

    Where :data:`BALANCED` and ``sock`` was bound with :func:`reuse_port`, each worker
    process listens on a socket of its own on that address and the kernel spreads new
    connections over them: with one shared socket, the first process to wake accepts
    every connection waiting, so a burst of keep-alive clients (8 connections opened at
    once, in ``benchmarks/bench_intake.py``) all landed on one of two processes. ``sock``
    itself then only holds the port.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    balanced = BALANCED and sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0

    class Supervisor(Multiprocess):
        # uvicorn reads ``self.sockets`` whenever it starts a worker process (at start
        # and to replace one); each read hands out a new socket, which the parent closes
        # once the process has it, so a dead worker's socket dies with it.
        _given: list[socket.socket]
        _handed: list[socket.socket]

        @property
        def sockets(self) -> list[socket.socket]:
            if not balanced:
                return self._given
            own = _worker_socket(self._given[0])
            self._handed.append(own)
            return [own]

        @sockets.setter
        def sockets(self, given: list[socket.socket]) -> None:
            self._given, self._handed = given, []

        def _close_handed(self) -> None:
            while self._handed:
                self._handed.pop().close()

        def init_processes(self) -> None:
            super().init_processes()
            self._close_handed()
            timeout = self.config.timeout_worker_healthcheck * 6
            if all(p.wait_until_ready(timeout, self.should_exit) for p in self.processes):
                on_ready()

        def restart_all(self) -> None:
            super().restart_all()
            self._close_handed()

        def keep_subprocess_alive(self) -> None:
            super().keep_subprocess_alive()
            self._close_handed()

    config = uvicorn.Config(app, workers=workers, **uvicorn_options)
    Supervisor(config, sockets=[sock]).run()
