"""The sandbox's ``/event/track/`` behaviour, independent of HTTP.

:meth:`TrackApi.handle` turns one request (its ``Access-Token`` and body) into a
:class:`Reply` (or ``None``: drop the connection), in the order a real deployment
applies them: gateway faults, token, rate limit, JSON, permission, validation, poison.
"""

from __future__ import annotations

import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cdp_tiktok.sandbox.state import EventStore
from cdp_tiktok.tiktok.payload import PayloadProblem, validate_request

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

GATEWAY_ERROR_HTML = (
    b"<html><head><title>503 Service Temporarily Unavailable</title></head>"
    b"<body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>"
)

#: data[] leaves TikTok reports with 40000 "Invalid Price Field" rather than 40002.
PRICE_FIELDS = frozenset({"price", "value"})


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer: status, body bytes and content type."""

    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault injection settings; rates are probabilities per request in [0, 1]."""

    throttle_rate: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    latency_ms: float = 0.0
    poison: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("throttle_rate", "error_rate", "drop_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")


def _tiktok(code: int, message: str, request_id: str) -> Reply:
    body = {"code": code, "message": message, "request_id": request_id, "data": {}}
    return Reply(200, _dumps(body).encode("utf-8"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def problem_reply(problem: PayloadProblem, request_id: str) -> Reply:
    """TikTok's answer to the first problem of a request (code 40000 or 40002)."""
    leaf = problem.path.rsplit(".", 1)[-1]
    if problem.index is None and leaf == "data":
        return _tiktok(40000, f"data: {problem.message}", request_id)
    if problem.index is not None and leaf in PRICE_FIELDS:
        return _tiktok(40000, f"{problem.path}: Invalid Price Field", request_id)
    return _tiktok(40002, str(problem), request_id)


class TrackApi:
    """The track endpoint's logic; thread-safe; randomness from one seeded RNG."""

    def __init__(
        self,
        store: EventStore,
        *,
        access_token: str,
        faults: Faults,
        seed: int | None = None,
        allowed_source_ids: Iterable[str] | None = None,
        require_page_url: bool = False,
    ) -> None:
        self.store = store
        self.require_page_url = require_page_url
        self.faults = faults
        self._token = access_token.encode("utf-8")
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._allowed = None if allowed_source_ids is None else frozenset(allowed_source_ids)
        self._prefix = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        self._counter = 0

    def _request_id(self) -> str:
        with self._rng_lock:
            self._counter += 1
            counter = self._counter
        return f"{self._prefix}{counter:08d}{uuid.uuid4().hex[:12].upper()}"

    def _draw(self) -> tuple[bool, bool, bool]:
        # Always three draws per request, so a seed gives the same sequence whatever
        # rates are set.
        with self._rng_lock:
            drop, error, throttle = (self._rng.random() for _ in range(3))
        f = self.faults
        return drop < f.drop_rate, error < f.error_rate, throttle < f.throttle_rate

    def handle(self, access_token: str | None, body: bytes) -> Reply | None:
        """The answer to one POST, or ``None`` to close the connection unanswered."""
        store = self.store
        store.count("requests")
        drop, error, throttle = self._draw()
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000.0)
        if drop:
            store.count("dropped")
            return None
        if error:
            store.count("errors")
            return Reply(503, GATEWAY_ERROR_HTML, "text/html")
        request_id = self._request_id()
        if access_token is None or not hmac.compare_digest(
            access_token.encode("utf-8"), self._token
        ):
            store.count("rejected_requests")
            return _tiktok(40105, "Access token is invalid or has expired.", request_id)
        if throttle:
            store.count("throttled")
            return _tiktok(40100, "Too many requests. Please retry later.", request_id)
        try:
            parsed = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            store.count("rejected_requests")
            return _tiktok(40000, "Request body is not valid JSON.", request_id)
        reply = self._refusal(parsed, request_id)
        if reply is not None:
            store.count("rejected_requests")
            return reply
        store.accept(parsed, parsed["data"], request_id, body)
        return _tiktok(0, "OK", request_id)

    def _refusal(self, parsed: Any, request_id: str) -> Reply | None:
        if (
            self._allowed is not None
            and isinstance(parsed, dict)
            and parsed.get("event_source_id") not in self._allowed
        ):
            return _tiktok(
                40001,
                "No permission to operate the event source: the token's user is not an "
                "admin or operator of it.",
                request_id,
            )
        problems = validate_request(parsed, names=True, require_page_url=self.require_page_url)
        if problems:
            return problem_reply(problems[0], request_id)
        if self.faults.poison:
            for index, item in enumerate(parsed["data"]):
                if item.get("event_id") in self.faults.poison:
                    return _tiktok(
                        40002, f"Batch.{index}.event_id: Invalid value (poisoned).", request_id
                    )
        return None
