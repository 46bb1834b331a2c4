"""Assembling a running intake: host, outbox connections, pipeline, metrics, worker."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

from cdp_tiktok.backends import open_outbox
from cdp_tiktok.delivery.outbox import OutboxStats
from cdp_tiktok.ingest.app import IntakeService
from cdp_tiktok.ingest.config import IntakeConfig
from cdp_tiktok.ingest.delivery import start_embedded_worker
from cdp_tiktok.ingest.depth import undelivered_count
from cdp_tiktok.ingest.metrics import ServiceMetrics
from cdp_tiktok.ingest.pipeline import Pipeline
from cdp_tiktok.settings import TikTokSettings

READY_PROBE_ID = "cdp-tiktok-ready-probe"


def compile_mappings(host: Any) -> None:
    """Compile every TikTok destination's mapping set now, so a broken mapping file stops
    the start (raising :class:`~cdp_tiktok.mapping.problems.MappingLoadError`) instead of
    refusing requests later."""
    from cdp_tiktok.tiktok.destination import PLUGIN_NAME, TikTokPlugin

    plugin = host.plugin(PLUGIN_NAME)
    if not isinstance(plugin, TikTokPlugin):
        return
    for destination in host.destinations.values():
        if destination.plugin == PLUGIN_NAME:
            plugin.mapping_set(destination)


def open_service(
    settings: TikTokSettings,
    deliveries: Mapping[str, TikTokSettings],
    config: IntakeConfig,
    stack: contextlib.ExitStack,
    *,
    worker: bool = True,
    metrics_dir: str | None = None,
) -> IntakeService:
    """An :class:`IntakeService` over ``settings.outbox`` and ``settings.identity``; what it
    opens is closed by ``stack``.

    ``deliveries`` maps each deliverable destination to its delivery settings (see
    :func:`cdp_tiktok.destinations.destination_settings`); with ``worker`` an embedded
    delivery worker runs while the application does. ``metrics_dir`` is the directory of
    prometheus-client's multiprocess mode when several processes serve (see
    :mod:`cdp_tiktok.ingest.workers`).
    """
    from cdp_tiktok.host import Host

    host = stack.enter_context(Host(settings, identity=settings.identity))
    compile_mappings(host)
    outbox = open_outbox(settings.outbox)
    stack.callback(outbox.close)
    probe = open_outbox(settings.outbox)  # metrics and readiness never wait on the pipeline
    stack.callback(probe.close)
    metrics = ServiceMetrics(metrics_dir)

    def stats() -> OutboxStats | None:
        try:
            return probe.stats()
        except Exception:
            return None

    metrics.watch_outbox(stats)

    def readiness() -> list[str]:
        problems = []
        try:
            probe.stats()
        except Exception as exc:
            problems.append(f"outbox unreachable ({type(exc).__name__})")
        if host.identity is not None:
            try:
                host.identity.lookup(READY_PROBE_ID, None)
            except Exception as exc:
                problems.append(f"identity store unreachable ({type(exc).__name__})")
        return problems

    limits = config.limits
    pipeline = Pipeline(
        lambda message: host.process(message, validated=True),
        outbox,
        deliveries.keys(),
        metrics,
        max_message_bytes=limits.max_message_bytes,
        max_waiting=limits.max_waiting_requests,
        max_queue_records=limits.max_queue_records,
        depth=undelivered_count(probe),
        flush_identity=host.flush,
    )
    service = IntakeService(config, pipeline, metrics, readiness)
    if worker:
        stop = threading.Event()
        running: list[threading.Thread] = []

        def start() -> None:
            running.append(start_embedded_worker(settings.outbox, settings, host, metrics, stop))

        def halt() -> None:
            stop.set()
            for thread in running:
                thread.join()

        service.on_start.append(start)
        service.on_stop.append(halt)
    return service
