"""One delivery process: open the outbox, build the routes, run a :class:`Deliverer`.

Used by ``cdp-tiktok worker`` (``drain=False``: runs until ``stop`` is set),
``cdp-tiktok outbox drain`` (``drain=True``) and, embedded in a thread, by ``serve``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cdp_tiktok.delivery.destinations import delivery_settings
from cdp_tiktok.delivery.sender import ClassifyFn
from cdp_tiktok.delivery.worker import Deliverer, DeliveryProgress, DeliveryReport
from cdp_tiktok.settings import TikTokSettings

if TYPE_CHECKING:
    from cdp_tiktok.delivery.outbox import Outbox
    from cdp_tiktok.host import Host


def build_deliverer(
    outbox: Outbox,
    settings: TikTokSettings,
    *,
    host: Host | None = None,
    concurrency: int | None = None,
    on_wait: Callable[[str], None] | None = None,
    observe: Callable[[ClassifyFn], ClassifyFn] | None = None,
    **options: Any,
) -> Deliverer:
    """A :class:`Deliverer` for every destination of :func:`delivery_settings`.

    With ``host``, its plugins classify answers, and encode requests when a plugin
    overrides ``cdp_encode_batch`` (otherwise the built-in encoder joins the stored events
    without re-encoding them); ``concurrency`` overrides requests in flight per destination.
    ``observe`` wraps the classifier (``serve`` counts TikTok's answers through it).
    """
    if concurrency is not None:
        settings = replace(settings, concurrency=concurrency)
    encode = None
    classify: ClassifyFn | None = None
    if host is not None:
        classify = host.hooks.classify_response
        if host.overrides("cdp_encode_batch"):
            encode = host.hooks.encode_batch
    if observe is not None:
        if classify is None:
            from cdp_tiktok.tiktok.codes import classify as default_classify

            classify = default_classify
        classify = observe(classify)
    return Deliverer(
        outbox,
        delivery_settings(settings),
        encode=encode,
        classify=classify,
        on_wait=on_wait,
        **options,
    )


def run_delivery(
    outbox: Outbox,
    settings: TikTokSettings,
    *,
    drain: bool,
    stop: threading.Event | None = None,
    host: Host | None = None,
    concurrency: int | None = None,
    on_wait: Callable[[str], None] | None = None,
    on_progress: Callable[[DeliveryProgress], None] | None = None,
    lease_seconds: float | None = None,
) -> DeliveryReport:
    """Deliver from ``outbox``: until drained (``drain``) or until ``stop`` is set.

    On ``stop`` the requests in flight finish and are settled and every unsent lease is
    released before this returns, so a SIGTERM handler only needs to set ``stop``.
    """
    deliverer = build_deliverer(
        outbox,
        settings,
        host=host,
        concurrency=concurrency,
        on_wait=on_wait,
        lease_seconds=lease_seconds,
    )
    return deliverer.run(drain=drain, stop=stop, on_progress=on_progress)
