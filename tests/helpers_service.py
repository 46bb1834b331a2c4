"""Running the real intake (uvicorn, loopback, port 0) in a thread for tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn

from cdp_tiktok.backends import open_outbox
from cdp_tiktok.destinations import destination_settings
from cdp_tiktok.ingest.app import IntakeService, create_app
from cdp_tiktok.ingest.auth import WriteKeys
from cdp_tiktok.ingest.config import IntakeConfig, IntakeLimits
from cdp_tiktok.ingest.pipeline import Job, JobResult, Pipeline
from cdp_tiktok.ingest.service import open_service
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN, SANDBOX_PIXEL_CODE, Secret, TikTokSettings

WRITE_KEY = "wk-test-0123456789"
PAGE_URL = "https://shop.example/"


def service_settings(tmp_path: Path, endpoint: str, **changes: Any) -> TikTokSettings:
    """Settings delivering to ``endpoint`` (a sandbox) with SQLite stores in ``tmp_path``."""
    base = TikTokSettings(
        event_source_id=SANDBOX_PIXEL_CODE,
        access_token=Secret(SANDBOX_ACCESS_TOKEN),
        endpoint=endpoint,
        outbox=f"sqlite:///{tmp_path / 'outbox.db'}",
        identity=f"sqlite:///{tmp_path / 'identity.db'}",
        default_page_url=PAGE_URL,
    )
    return replace(base, **changes)


@dataclass
class RunningIntake:
    """A started intake: its base URL and the service object behind it."""

    url: str
    service: IntakeService
    settings: TikTokSettings

    def outbox_count(self) -> int:
        """Records in the outbox that are not delivered (pending, leased or dead)."""
        outbox = open_outbox(self.settings.outbox)
        try:
            stats = outbox.stats()
            return stats.pending + stats.leased + stats.dead
        finally:
            outbox.close()


@contextlib.contextmanager
def running_intake(
    settings: TikTokSettings,
    *,
    write_keys: Mapping[str, str] | None = None,
    limits: IntakeLimits | None = None,
    worker: bool = True,
    server_options: Mapping[str, Any] | None = None,
) -> Iterator[RunningIntake]:
    """Serve the intake on 127.0.0.1:<free port> until the block ends (``server_options``:
    more uvicorn settings, e.g. ``http``/``loop``)."""
    config = IntakeConfig(WriteKeys(write_keys or {"web": WRITE_KEY}), limits or IntakeLimits())
    with contextlib.ExitStack() as stack:
        service = open_service(
            settings, destination_settings(settings), config, stack, worker=worker
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        stack.callback(sock.close)
        started = threading.Event()

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                started.set()

        server = Server(
            uvicorn.Config(
                create_app(service),
                log_config=None,
                access_log=False,
                lifespan="on",
                **(server_options or {}),
            )
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            assert started.wait(15), "the intake did not start"
            port = sock.getsockname()[1]
            yield RunningIntake(f"http://127.0.0.1:{port}", service, settings)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            assert not thread.is_alive(), "the intake did not stop"


def answer_of(pipeline: Pipeline, items: Sequence[Any], kind: str | None) -> JobResult:
    """Submit one request's ``items`` to a started ``pipeline``; its answer (30 s at most)."""
    answered = threading.Event()
    results: list[JobResult] = []

    def done(result: JobResult) -> None:
        results.append(result)
        answered.set()

    pipeline.submit(Job(list(items), kind, "web", 100, done))
    assert answered.wait(30), "the pipeline did not answer in time"
    return results[0]
