"""The intake's endpoint table: request path -> the message type its body carries.

Rows, not branches: the analytics.js one-letter paths are rows like the long ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One POST path. ``kind`` is the message type of a single call, or ``None`` when the
    body is a batch envelope ``{"batch": [...]}``."""

    path: str
    kind: str | None

    @property
    def is_batch(self) -> bool:
        """Whether the body is a batch envelope."""
        return self.kind is None


_SINGLE = ("track", "identify", "page", "screen", "group", "alias")

ENDPOINTS: tuple[Endpoint, ...] = (
    *(Endpoint(f"/v1/{kind}", kind) for kind in _SINGLE),
    Endpoint("/v1/batch", None),
    Endpoint("/v1/import", None),
    # analytics.js (analytics-next): /v1/ + the first letter of the type; /v1/b batches.
    *(Endpoint(f"/v1/{kind[0]}", kind) for kind in _SINGLE),
    Endpoint("/v1/b", None),
)
"""Every path the intake answers on with POST (and OPTIONS when CORS is on)."""
