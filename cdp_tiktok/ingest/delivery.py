"""The delivery worker ``serve`` embeds: the shared delivery runner
(:mod:`cdp_tiktok.delivery.runner`, as ``cdp-tiktok worker`` uses it) on a thread,
instrumented for the service's metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from cdp_tiktok.backends import open_outbox
from cdp_tiktok.delivery.runner import build_deliverer
from cdp_tiktok.delivery.worker import MAX_POOL, DeliveryProgress
from cdp_tiktok.events import Verdict
from cdp_tiktok.ingest.metrics import ServiceMetrics
from cdp_tiktok.settings import TikTokSettings

if TYPE_CHECKING:
    from cdp_tiktok.host import Host

log = logging.getLogger("cdp_tiktok.ingest.delivery")


class TimedTransport(httpx.BaseTransport):
    """An HTTP transport that observes each request's duration in the latency histogram."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._inner = httpx.HTTPTransport(
            limits=httpx.Limits(max_connections=MAX_POOL, max_keepalive_connections=MAX_POOL)
        )
        self._metrics = metrics

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, reading the whole answer inside the timed span."""
        started = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
            response.read()
            return response
        finally:
            self._metrics.latency.observe(time.perf_counter() - started)

    def close(self) -> None:
        """Close the connections."""
        self._inner.close()


def counting_classifier(
    classify: Callable[..., Verdict | None], metrics: ServiceMetrics
) -> Callable[..., Verdict | None]:
    """``classify`` that also counts TikTok's answer codes and observes batch sizes."""

    def counted(
        status_code: int | None, body: bytes, error: str | None, batch_size: int
    ) -> Verdict | None:
        verdict = classify(status_code, body, error, batch_size)
        metrics.batch_size.observe(batch_size)
        if verdict is not None:
            if verdict.code is not None:
                code = str(verdict.code)
            elif status_code is not None:
                code = f"http_{status_code}"
            else:
                code = "network"
            metrics.answers.labels(code, verdict.outcome.name.lower()).inc()
        return verdict

    return counted


class _ProgressCounter:
    """Turns a run's cumulative progress into counter increments."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics
        self._seen = {"delivered": 0, "retried": 0, "dead": 0}

    def __call__(self, progress: DeliveryProgress) -> None:
        targets = {
            "delivered": self._metrics.delivered,
            "retried": self._metrics.retried,
            "dead": self._metrics.dead,
        }
        for name, counter in targets.items():
            value = getattr(progress, name)
            if value > self._seen[name]:
                counter.inc(value - self._seen[name])
                self._seen[name] = value


def start_embedded_worker(
    outbox_url: str,
    settings: TikTokSettings,
    host: Host,
    metrics: ServiceMetrics,
    stop: threading.Event,
) -> threading.Thread:
    """Deliver from ``outbox_url`` on a thread with its own outbox connection until
    ``stop`` is set, with the shared delivery runner (every destination of
    :func:`~cdp_tiktok.delivery.destinations.delivery_settings`, the host's plugins
    classifying); in-flight requests are finished and unsent leases released then.

    A failure of the delivery loop is logged and the thread restarts it after a pause,
    so the intake keeps accepting (events wait in the outbox meanwhile).
    """

    def deliver() -> None:
        while not stop.is_set():
            try:
                outbox = open_outbox(outbox_url)
                try:
                    build_deliverer(
                        outbox,
                        settings,
                        host=host,
                        observe=lambda classify: counting_classifier(classify, metrics),
                        transport=TimedTransport(metrics),
                        lease_seconds=settings.lease_seconds,
                        on_wait=lambda text: log.warning("delivery waiting: %s", text),
                    ).run(drain=False, stop=stop, on_progress=_ProgressCounter(metrics))
                finally:
                    outbox.close()
            except Exception as exc:
                log.error("delivery worker failed (%s); restarting in 5 s", type(exc).__name__)
                stop.wait(5.0)

    thread = threading.Thread(target=deliver, name="cdp-tiktok-deliver", daemon=True)
    thread.start()
    return thread
