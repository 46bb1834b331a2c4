"""JSON read as the standard library reads it, by orjson where the two are sure to agree.

orjson is several times faster, but not the same reader: it reads an integer beyond 64
bits as a float, nests deeper than the standard library's recursion allows, and refuses
what the standard library accepts (lone surrogates, a byte order mark, numbers beyond a
double). :func:`loads_agreeing` takes orjson's value only where it cannot differ, and
otherwise asks the standard library (through the caller's reader, which keeps the
caller's refusals). Property-tested against the standard library
(``tests/test_ingest_fastpaths.py``, ``tests/test_fastpaths_json.py``). Used by the
intake's bodies and by the lines of ``map`` and ``send`` (:mod:`cdp_tiktok.jsonstream`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Final, TypeVar

import orjson

T = TypeVar("T")

# A number token's integer part follows a "[", "," or ":" (or whitespace, or the start),
# then perhaps a "-". Digits map to "0", those four and the four whitespace bytes to ":",
# "-" to itself, every other byte (quotes, letters, ".") to "x": a number token of 19 or
# more integer digits is then one of two substrings; digits in strings (hex digests, user
# agents) follow a quote or a letter and do not count.
_CLASSES = bytes(
    ord("0") if 48 <= c <= 57 else ord(":") if c in b"[,: \t\n\r" else c if c == 45 else ord("x")
    for c in range(256)
)
_LONG_DIGITS = b"0" * 19
_LONG_NUMBERS = (b":" + _LONG_DIGITS, b":-" + _LONG_DIGITS)
_LONG_STARTS = (_LONG_DIGITS, b"-" + _LONG_DIGITS)  # a number at the very start
# The standard library's parser recurses once per level and gives up at the interpreter's
# recursion limit less the caller's frames; this margin leaves room for the server's.
_FRAME_MARGIN = 200


def _nesting_limit() -> int:
    return sys.getrecursionlimit() - _FRAME_MARGIN


def orjson_may_agree(data: bytes) -> bool:
    """Whether orjson's value of ``data``, if it reads one, is the standard library's
    provided it is not nested :func:`too_deep`: false when ``data`` has a number token
    with 19 or more integer digits (orjson reads an integer beyond 64 bits as a float;
    a run of digits after a space in a string counts too, erring on the side of the
    standard library)."""
    classes = data.translate(_CLASSES)
    return not (
        _LONG_NUMBERS[0] in classes
        or _LONG_NUMBERS[1] in classes
        or classes.startswith(_LONG_STARTS)
    )


def too_deep(value: Any, data: bytes) -> bool:
    """Whether ``value`` (read from ``data``) nests deeper than the standard library's
    parser reads. Sure without a walk when ``data`` is shorter than twice its limit (each
    level takes an opening and a closing bracket) or holds fewer brackets than it."""
    limit = _nesting_limit()
    if len(data) < 2 * limit or data.count(b"[") + data.count(b"{") < limit:
        return False
    level: list[Any] = [value]
    depth = 0
    while level:
        depth += 1
        if depth >= limit:
            return True
        inner: list[Any] = []
        for container in level:
            children = container.values() if type(container) is dict else container
            inner += [c for c in children if type(c) is dict or type(c) is list]
        level = inner
    return False


NOT_SURE: Final = object()
"""What :func:`agreeing_value` gives when only the standard library can say."""


def agreeing_value(data: bytes) -> Any:
    """orjson's value of ``data`` where it is sure to be the standard library's (no
    string of it then holds a lone surrogate: orjson refuses them); else
    :data:`NOT_SURE`, and the standard library must read ``data``."""
    if orjson_may_agree(data):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return NOT_SURE
        if type(value) not in (dict, list) or not too_deep(value, data):
            return value
    return NOT_SURE


def loads_agreeing(data: bytes, exact: Callable[[bytes], T]) -> tuple[Any | T, bool]:
    """``exact(data)``'s value (``exact`` is the standard library's reading, raising the
    caller's refusals), read by orjson where it is sure to agree; and whether ``exact``
    read it (``False``: orjson did, so no string of it holds a lone surrogate)."""
    value = agreeing_value(data)
    if value is not NOT_SURE:
        return value, False
    return exact(data), True
