"""The built-in delivery plugin: batch key, TikTok encoding and response classification.

Registered by the host with ``trylast`` so that any user plugin implementing one of these
``firstresult`` hooks is asked first and wins with a non-``None`` answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cdp_tiktok.events import BatchKey, OutgoingEvent, Verdict
from cdp_tiktok.hookspecs import hookimpl
from cdp_tiktok.tiktok.codes import classify
from cdp_tiktok.tiktok.payload import build_request, encode_request


class DeliveryPlugin:
    """Default answers of the delivery hooks (each always answers, never ``None``)."""

    @hookimpl(trylast=True)
    def cdp_batch_key(self, event: OutgoingEvent) -> BatchKey:
        """Events share a request when their :class:`~cdp_tiktok.events.BatchKey` is equal."""
        return event.key

    @hookimpl(trylast=True)
    def cdp_encode_batch(
        self, key: BatchKey, events: Sequence[dict[str, Any]], partner_name: str | None
    ) -> bytes:
        """The TikTok Events API 2.0 body: compact UTF-8 JSON of ``build_request``."""
        return encode_request(build_request(key, events, partner_name))

    @hookimpl(trylast=True)
    def cdp_classify_response(
        self, status_code: int | None, body: bytes, error: str | None, batch_size: int
    ) -> Verdict:
        """TikTok's response classification (see :func:`~cdp_tiktok.tiktok.codes.classify`)."""
        return classify(status_code, body, error, batch_size)
