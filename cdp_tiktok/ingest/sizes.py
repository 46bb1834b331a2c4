"""The size of one message of a batch, as the intake's per-message limit counts it.

A message's size is the length in UTF-8 bytes of its compact JSON re-encoding (the
standard library's, non-ASCII kept): what it would weigh sent alone, whatever the
whitespace of the batch it came in.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode

# orjson's encoding differs from the standard library's only in number tokens: a finite
# float gains at most one character there ("1e-07" for orjson's "1e-7"), a non-finite one
# at most five ("-Infinity" for orjson's "null"). So the standard library's text is at
# most 9/4 as long as orjson's, and a message within 4/9 of the limit needs no more.
_WIDEST_NUMERATOR, _WIDEST_DENOMINATOR = 9, 4


def over_limit_exact(item: Any, limit: int) -> bool:
    """Whether ``item``'s compact JSON re-encoding is longer than ``limit`` UTF-8 bytes
    (the reference the intake's limit is defined by)."""
    text = _compact(item)
    # A character is 1 to 4 bytes of UTF-8: encode only when the length cannot decide.
    if len(text) * 4 <= limit:
        return False
    return len(text) > limit or len(text.encode("utf-8")) > limit


def over_limit(item: Any, limit: int) -> bool:
    """Exactly :func:`over_limit_exact`'s verdict (and exception, for a string that is not
    Unicode text), re-encoding with the standard library only for a message near the
    limit or one orjson cannot encode (an integer beyond 64 bits, a lone surrogate,
    deep nesting)."""
    try:
        size = len(orjson.dumps(item))
    except orjson.JSONEncodeError:
        return over_limit_exact(item, limit)
    if size * _WIDEST_NUMERATOR <= limit * _WIDEST_DENOMINATOR:
        return False
    return over_limit_exact(item, limit)
