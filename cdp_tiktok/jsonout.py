"""Compact JSON lines on a text stream: orjson where its bytes equal :mod:`json`'s.

:func:`line_writer` is what ``cdp-tiktok map`` prints its events with. orjson encodes
several times faster than :mod:`json`, but not always alike: it formats floats below
10^-4 differently (``0.00001`` against ``1e-05``), writes NaN and the infinities as
``null`` where :mod:`json` refuses them, refuses integers beyond 64 bits and non-string
keys, and knows types :mod:`json` refuses. So a dict or list is encoded by orjson
(subclasses, dataclasses and datetimes refused, as :mod:`json` would) and its bytes are
kept unless they hold a ``null``, or a number with a negative exponent or four zeros
after the point (a number token: after ``:``, ``[`` or ``,``); then, and for whatever
orjson refuses, :mod:`json` encodes the value and raises what it always raised. The one
difference left: a ``uuid.UUID`` or a plain ``Enum`` member, which :mod:`json` refuses,
is written as orjson (and the outbox, which stores events with it) writes it.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from typing import Any, Final, TextIO

import orjson

__all__ = ["dumps_line", "line_writer"]

_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_OPTIONS: Final = (
    orjson.OPT_APPEND_NEWLINE
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
# Where orjson's bytes may differ from json's: a null (NaN or an infinity, or a real
# None), a float below 10^-4 (``1e-7`` or ``0.00001``). Only number tokens are meant
# (after ``:``, ``[`` or ``,``; a string starts with a quote); a match inside a string
# only sends that value to json, which writes the same bytes.
_MAY_DIFFER: Final = re.compile(rb"[:\[,](?:null|-?\d+(?:\.\d+)?e-|-?0\.0000)").search


def dumps_line(value: Any) -> str:
    """``value`` as one line of compact JSON (non-ASCII kept, NaN refused) and ``"\\n"``."""
    return _dumps(value) + "\n"


def line_writer(stream: TextIO) -> Callable[[Any], None]:
    """A function that writes a value to ``stream`` as :func:`dumps_line` would.

    The bytes that reach the stream's buffer are exactly those of
    ``stream.write(dumps_line(value))``, and a value :mod:`json` refuses raises what it
    raises (but for the UUIDs and plain enums of the module docstring). A stream
    without a binary buffer, not encoded as UTF-8, or line-buffered (a terminal, where
    each line shows at once) is simply written as text. Text written to ``stream`` by
    others after the first line may come out of order: the writer owns the stream.
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
    fast, options, may_differ = orjson.dumps, _OPTIONS, _MAY_DIFFER

    def write_line(value: Any) -> None:
        if value.__class__ is dict or value.__class__ is list:
            try:
                line = fast(value, option=options)
            except orjson.JSONEncodeError:  # a big integer, a key, a subclass, ...
                pass
            else:
                # ``in`` is a memchr-speed scan; the regex only confirms its rare hits
                if (
                    b"null" not in line and b"e-" not in line and b"0.0000" not in line
                ) or may_differ(line) is None:
                    write(line)
                    return
        write(dumps_line(value).encode(encoding, errors))

    return write_line


def _utf8(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False
