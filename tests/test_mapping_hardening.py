"""Mapping files and ids cannot run away (issue 9 points 4 and 6, issue 8 point 8)."""

from __future__ import annotations

import hashlib
from typing import Any

from cdp_tiktok.mapping import default_mapping_dir, load_mapping_set
from cdp_tiktok.mapping.coerce import MAX_EVENT_ID
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.tiktok.payload import validate_request


def order(message_id: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "messageId": message_id,
        "timestamp": "2025-01-01T00:00:00Z",
        "properties": {"revenue": 10, "currency": "USD"},
        "context": {"page": {"url": "https://shop.example/"}},
    }


# --- 9.4: a long messageId still deduplicates -----------------------------------------


def test_an_id_longer_than_the_event_id_limit_becomes_its_sha256_hex() -> None:
    mappings = load_mapping_set(
        [default_mapping_dir()], settings=TikTokSettings(event_source_id="CPIX")
    )

    def event_id(message_id: str) -> Any:
        result = mappings.map(order(message_id))
        assert len(result.events) == 1, result.warnings
        data = result.events[0].data
        body = {"event_source": "web", "event_source_id": "CPIX", "data": [data]}
        assert validate_request(body) == []
        return data.get("event_id")

    at_limit = "a" * MAX_EVENT_ID
    assert event_id(at_limit) == at_limit
    for length in (MAX_EVENT_ID + 1, 5000, 100_000):
        long_id = "m" * (length - 1) + "é"
        expected = hashlib.sha256(long_id.encode()).hexdigest()
        assert event_id(long_id) == expected  # stable: a retry gets the same id
    assert event_id("x" * 5000) != event_id("y" * 5000)
