"""How one answer of TikTok's ``/event/track/`` settles the events of its request.

TikTok reports errors with HTTP 200 and a non-zero body ``code``, so the body decides;
HTTP statuses matter only when a gateway answers instead of TikTok. The rules are data
(:data:`CODE_RULES`, :data:`CODE_RANGES`, :data:`HTTP_RULES`); :func:`classify` applies
them. Nothing counts as delivered unless the body says ``code`` 0 or 20001.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdp_tiktok.events import Outcome, Verdict

MESSAGE_LIMIT = 500
UNKNOWN_CODE_REASON = "unknown_code"


@dataclass(frozen=True, slots=True)
class Rule:
    """What a code or status means and how to treat it."""

    outcome: Outcome
    reason: str
    meaning: str


#: Body codes of an HTTP 200 answer (reference §8).
CODE_RULES: Mapping[int, Rule] = {
    0: Rule(Outcome.DELIVERED, "ok", "accepted"),
    20001: Rule(Outcome.DELIVERED, "partial", "undocumented; treated as (partial) success"),
    40000: Rule(Outcome.SPLIT, "invalid_parameter", "invalid parameter, e.g. a string price"),
    40001: Rule(Outcome.STOP, "permission", "no permission on the pixel or event set"),
    40002: Rule(Outcome.SPLIT, "validation", "validation error naming Batch.N.<field>"),
    40100: Rule(Outcome.THROTTLED, "throttled", "too many requests (QPS/QPM/QPD)"),
    40105: Rule(Outcome.STOP, "auth", "access token missing or invalid"),
}

#: Body codes not listed above, by range (first match wins): (low, high, rule).
CODE_RANGES: tuple[tuple[int, int, Rule], ...] = (
    (
        40000,
        49999,
        Rule(Outcome.RETRY, UNKNOWN_CODE_REASON, "unknown client error; retry a bounded number"),
    ),
    (50000, 59999, Rule(Outcome.RETRY, "server_error", "TikTok internal error")),
)

#: Any other non-zero code: never delivered; retried a bounded number of times.
OTHER_CODE = Rule(Outcome.RETRY, UNKNOWN_CODE_REASON, "code outside every documented range")

#: HTTP statuses other than 200 (when the gateway, not TikTok, answered).
HTTP_RULES: Mapping[int, Rule] = {
    408: Rule(Outcome.RETRY, "http_timeout", "gateway timeout on the request"),
    413: Rule(Outcome.SPLIT, "too_large", "request body too large for the gateway"),
    429: Rule(Outcome.THROTTLED, "throttled", "rate limited at the gateway"),
}
HTTP_4XX = Rule(Outcome.DEAD, "http_4xx", "request rejected by the gateway")
HTTP_5XX = Rule(Outcome.RETRY, "http_5xx", "gateway or server error")
HTTP_OTHER = Rule(Outcome.RETRY, "gateway", "unexpected HTTP status")
NO_ANSWER = Rule(Outcome.RETRY, "transport", "no HTTP answer (timeout, connection reset)")
NO_CODE = Rule(Outcome.RETRY, "gateway", "HTTP 200 without a JSON body holding an integer code")

_SPACES = re.compile(r"\s+")


def rule_for_code(code: int) -> Rule:
    """The rule for a body ``code`` of an HTTP 200 answer."""
    rule = CODE_RULES.get(code)
    if rule is not None:
        return rule
    for low, high, ranged in CODE_RANGES:
        if low <= code <= high:
            return ranged
    return OTHER_CODE


def rule_for_status(status: int) -> Rule:
    """The rule for an HTTP status other than 2xx."""
    rule = HTTP_RULES.get(status)
    if rule is not None:
        return rule
    if 400 <= status <= 499:
        return HTTP_4XX
    if 500 <= status <= 599:
        return HTTP_5XX
    return HTTP_OTHER


def _snippet(text: str) -> str:
    return _SPACES.sub(" ", text).strip()[:MESSAGE_LIMIT]


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def classify(
    status_code: int | None,
    body: bytes,
    error: str | None,
    batch_size: int,
    *,
    retry_after: float | None = None,
) -> Verdict:
    """The verdict on one attempt to send ``batch_size`` events.

    ``status_code`` ``None`` means no HTTP answer (``error`` says why). The body
    ``code`` decides for HTTP 2xx; an answer without an integer ``code`` is a gateway
    fault (retry). ``SPLIT`` becomes ``DEAD`` when the batch holds a single event.
    ``message`` holds TikTok's message (or the start of a non-JSON body), at most
    ``MESSAGE_LIMIT`` characters; ``request_id`` is kept when present; ``retry_after``
    (seconds, from a ``Retry-After`` header) is passed through on every verdict.
    """
    if status_code is None:
        message = _snippet(error or "no answer")
        return _verdict(NO_ANSWER, batch_size, message=message, retry_after=retry_after)
    parsed = _parse(body)
    request_id = parsed.get("request_id") if parsed is not None else None
    if not isinstance(request_id, str):
        request_id = None
    raw_message = parsed.get("message") if parsed is not None else None
    message = _snippet(raw_message) if isinstance(raw_message, str) else ""
    if not 200 <= status_code <= 299:
        text = message or _snippet(body.decode("utf-8", "replace"))
        return _verdict(
            rule_for_status(status_code),
            batch_size,
            http_status=status_code,
            message=f"HTTP {status_code}: {text}" if text else f"HTTP {status_code}",
            request_id=request_id,
            retry_after=retry_after,
        )
    code = parsed.get("code") if parsed is not None else None
    if type(code) is not int:
        return _verdict(
            NO_CODE,
            batch_size,
            http_status=status_code,
            message=message or _snippet(body.decode("utf-8", "replace")),
            request_id=request_id,
            retry_after=retry_after,
        )
    return _verdict(
        rule_for_code(code),
        batch_size,
        code=code,
        http_status=status_code,
        message=message,
        request_id=request_id,
        retry_after=retry_after,
    )


def _verdict(
    rule: Rule,
    batch_size: int,
    *,
    code: int | None = None,
    http_status: int | None = None,
    message: str = "",
    request_id: str | None = None,
    retry_after: float | None = None,
) -> Verdict:
    outcome = rule.outcome
    if outcome is Outcome.SPLIT and batch_size <= 1:
        outcome = Outcome.DEAD
    return Verdict(
        outcome=outcome,
        reason=rule.reason,
        code=code,
        http_status=http_status,
        message=message,
        request_id=request_id,
        retry_after=retry_after,
    )
