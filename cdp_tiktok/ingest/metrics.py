"""The service's Prometheus metrics, in one registry per running service.

Labels never carry a secret or a personal value: ``source`` is the *name* given to a
write key, ``type`` a Segment call type, ``event`` a TikTok event name from the
mapping rules, ``reason`` a refusal code of :mod:`.body` or :mod:`.pipeline`, ``code``
TikTok's answer code (or ``http_<status>`` / ``network`` when there was none).
docs/operations.md explains each metric.

With ``serve --workers N`` every process counts into prometheus-client's multiprocess
files (``PROMETHEUS_MULTIPROC_DIR``) and a scrape sums the files of all processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from cdp_tiktok.delivery.outbox import OutboxStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _OutboxCollector(Collector):
    """Queue depth by state, read from the outbox at scrape time."""

    def __init__(self, stats: Callable[[], OutboxStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        if stats is None:
            return
        family = GaugeMetricFamily(
            "cdp_tiktok_outbox_records",
            "Outbox records by state (held: pending records waiting for their retry time).",
            labels=["state"],
        )
        for state in ("pending", "held", "leased", "dead"):
            family.add_metric([state], getattr(stats, state))
        yield family


class ServiceMetrics:
    """Every metric ``serve`` exposes on ``GET /metrics``.

    With ``multiprocess_dir`` (the process's ``PROMETHEUS_MULTIPROC_DIR``) the counters
    and histograms rendered are the sums over every process writing to that directory.
    """

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._exposed = self.registry
        if multiprocess_dir is not None:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        r = self.registry
        self.requests = Counter(
            "cdp_tiktok_intake_requests",
            "HTTP requests to the intake by endpoint path and status.",
            ["path", "status"],
            registry=r,
        )
        self.received = Counter(
            "cdp_tiktok_intake_messages_received",
            "Messages accepted (validated, mapped and durably enqueued) by type and source.",
            ["type", "source"],
            registry=r,
        )
        self.refused = Counter(
            "cdp_tiktok_intake_messages_refused",
            "Messages refused (nothing enqueued) by reason; a refused request without "
            "readable messages counts as one.",
            ["reason"],
            registry=r,
        )
        self.mapped = Counter(
            "cdp_tiktok_events_mapped",
            "TikTok events produced and enqueued, by destination and TikTok event name.",
            ["destination", "event"],
            registry=r,
        )
        self.delivered = Counter(
            "cdp_tiktok_delivery_delivered", "Events TikTok accepted.", registry=r
        )
        self.retried = Counter(
            "cdp_tiktok_delivery_retried", "Events scheduled for another attempt.", registry=r
        )
        self.dead = Counter(
            "cdp_tiktok_delivery_dead_lettered", "Events moved to the dead letters.", registry=r
        )
        self.answers = Counter(
            "cdp_tiktok_delivery_answers",
            "TikTok answers by code and outcome.",
            ["code", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "cdp_tiktok_delivery_request_seconds",
            "Duration of one request to TikTok (connection to last byte).",
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.batch_size = Histogram(
            "cdp_tiktok_delivery_batch_events",
            "Events per request sent to TikTok.",
            buckets=(1, 5, 10, 50, 100, 250, 500, 750, 1000),
            registry=r,
        )

    def watch_outbox(self, stats: Callable[[], OutboxStats | None]) -> None:
        """Expose the outbox's queue depth, read by ``stats`` at each scrape."""
        # Read from the shared outbox, the same for every process: exposed once, not summed.
        self._exposed.register(_OutboxCollector(stats))

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self._exposed)
