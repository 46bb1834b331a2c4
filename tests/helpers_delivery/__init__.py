"""Shared builders for the delivery tests: realistic mapped events, settings, a fake clock."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.settings import SANDBOX_PIXEL_CODE, Secret, TikTokSettings

TOKEN = "tok-SECRET-7f3a9c1e5b"
DESTINATION = "TikTok"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def key_for(destination: str = DESTINATION, test_event_code: str | None = None) -> BatchKey:
    return BatchKey(destination, "web", SANDBOX_PIXEL_CODE, test_event_code)


def mapped_event(i: int, *, event_id: str | None = None, pad: int = 0) -> dict[str, Any]:
    """One realistic TikTok data[] item (hashed user keys, contents)."""
    data: dict[str, Any] = {
        "event": "Purchase",
        "event_time": 1_732_500_000 + i,
        "event_id": event_id or f"evt-{i:07d}",
        "user": {
            "email": [sha(f"user{i % 997}@example.com")],
            "phone": [sha(f"+1555{i % 9973:07d}")],
            "external_id": [sha(f"customer-{i % 4999}")],
            "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/133.0",
        },
        "page": {"url": f"https://shop.example.com/checkout/{i}"},
        "properties": {
            "currency": "USD",
            "value": round(10 + (i % 500) * 1.25, 2),
            "content_type": "product",
            "order_id": f"order-{i}",
            "contents": [
                {"content_id": f"sku-{i % 300}", "price": 9.99, "quantity": 1 + i % 3},
                {"content_id": f"sku-{(i + 7) % 300}", "price": 19.5, "quantity": 1},
            ],
        },
    }
    if pad:
        data["properties"]["description"] = "x" * pad
    return data


def outgoing(n: int, *, key: BatchKey | None = None, start: int = 0) -> list[OutgoingEvent]:
    key = key or key_for()
    return [OutgoingEvent(key, mapped_event(i)) for i in range(start, start + n)]


def settings_for(endpoint: str = "http://tiktok.test", **overrides: Any) -> TikTokSettings:
    values: dict[str, Any] = {
        "event_source_id": SANDBOX_PIXEL_CODE,
        "access_token": Secret(TOKEN),
        "endpoint": endpoint,
    }
    values.update(overrides)
    if isinstance(values["access_token"], str):
        values["access_token"] = Secret(values["access_token"])
    return TikTokSettings(**values).validate()


class FakeClock:
    """A wall clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = time.time()
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)
