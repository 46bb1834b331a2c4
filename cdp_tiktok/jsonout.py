"""Compact JSON lines on a text stream: orjson where its bytes equal :mod:`json`'s.

:func:`line_writer` is what ``cdp-tiktok map`` prints its events with. orjson encodes
several times faster than :mod:`json`, but not always alike: it formats some floats
below 10^-4 differently (``0.00001`` against ``1e-05``), writes NaN and the
infinities as ``null`` where :mod:`json` refuses them, refuses integers beyond 64 bits
and knows types :mod:`json` refuses (datetimes, dataclasses, …). So a value goes to
orjson only when it holds nothing but dicts, lists, strings, integers, booleans,
``None`` and floats in the range where both agree; anything else, and anything orjson
refuses, is encoded by :mod:`json`, which raises what it always raised.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Callable
from typing import Any, Final, TextIO

import orjson

__all__ = ["dumps_line", "line_writer"]

_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_LEAVES: Final[frozenset[type]] = frozenset((str, int, bool, type(None)))
# Floats orjson writes as repr() does: 0, and every finite one from 10^-4 on (checked
# by tests/test_fastpaths_jsonout.py, large exponents included).
_SMALLEST: Final = 1e-4
_INFINITY: Final = math.inf


def dumps_line(value: Any) -> str:
    """``value`` as one line of compact JSON (non-ASCII kept, NaN refused) and ``"\\n"``."""
    return _dumps(value) + "\n"


def _orjson_alike(value: Any) -> bool:
    """Whether orjson's encoding of ``value`` is byte for byte :func:`dumps_line`'s."""
    if value.__class__ is not dict and value.__class__ is not list:
        return False
    stack = [value]
    while stack:
        node = stack.pop()
        for item in node.values() if node.__class__ is dict else node:
            cls = item.__class__
            if cls in _LEAVES:
                continue
            if cls is float:
                if not (_SMALLEST <= abs(item) < _INFINITY or item == 0.0):
                    return False  # NaN fails both tests
            elif cls is dict or cls is list:
                stack.append(item)
            else:
                return False
    return True


def line_writer(stream: TextIO) -> Callable[[Any], None]:
    """A function that writes a value to ``stream`` as :func:`dumps_line` would.

    The bytes that reach the stream's buffer are exactly those of
    ``stream.write(dumps_line(value))``, and a value :mod:`json` refuses raises what it
    raises. A stream without a binary buffer, not encoded as UTF-8, or line-buffered (a
    terminal, where each line shows at once) is simply written as text. Text written
    to ``stream`` by others after the first line may come out of order: the writer owns
    the stream.
    """
    buffer = getattr(stream, "buffer", None)
    encoding = getattr(stream, "encoding", None) or ""
    if buffer is None or getattr(stream, "line_buffering", True) or not _utf8(encoding):

        def write_text(value: Any) -> None:
            stream.write(dumps_line(value))

        return write_text
    stream.flush()
    errors = getattr(stream, "errors", None) or "strict"
    write = buffer.write
    option = orjson.OPT_APPEND_NEWLINE

    def write_line(value: Any) -> None:
        if _orjson_alike(value):
            try:
                write(orjson.dumps(value, option=option))
                return
            except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits
                pass
        write(dumps_line(value).encode(encoding, errors))

    return write_line


def _utf8(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False
