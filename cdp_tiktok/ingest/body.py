"""Reading a request body within its size limit, gzip included, and parsing its JSON.

Every refusal is a :class:`Refusal` carrying the HTTP status, a stable ``code`` (also
the ``reason`` label of the refusal metric) and a sentence that never quotes the body.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

from cdp_tiktok.jsonagree import loads_agreeing


class Refusal(Exception):
    """A request refused before anything was enqueued."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.details = details


def too_large(limit: int) -> Refusal:
    """The refusal of a body over ``limit`` bytes."""
    return Refusal(400, "too_large", f"request body is larger than {limit} bytes")


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, refusing as soon as it exceeds ``limit`` bytes (not reading on)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def decompress(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """``raw`` decoded per ``Content-Encoding`` (identity or gzip), at most ``limit`` bytes.

    The decompressed size is bounded while inflating, so a small gzip bomb cannot grow
    into memory.
    """
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return raw
    if name not in ("gzip", "x-gzip"):
        raise Refusal(415, "unsupported_encoding", f"Content-Encoding {name!r} is not supported")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise Refusal(400, "malformed_gzip", "the gzip body cannot be decompressed") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise too_large(limit)
    if not inflater.eof:
        raise Refusal(400, "malformed_gzip", "the gzip body is truncated")
    return data


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_exact(data: bytes) -> Any:
    """The JSON value of ``data`` as the standard library reads it (strict: no ``NaN`` or
    ``Infinity``); a refusal says where the JSON breaks (never what). The reference
    behaviour :func:`parse_json` reproduces faster."""
    try:
        return json.loads(data, parse_constant=_not_json)
    except UnicodeDecodeError:
        raise Refusal(400, "malformed_json", "the body is not UTF-8 text") from None
    except RecursionError:
        raise Refusal(400, "malformed_json", "the JSON is nested too deeply") from None
    except ValueError as exc:  # malformed (JSONDecodeError is a ValueError), NaN, Infinity
        raise Refusal(400, "malformed_json", f"malformed JSON: {exc}") from None


def parse_json(data: bytes) -> Any:
    """Exactly :func:`parse_json_exact`'s value or refusal, by orjson where it is sure to
    agree (see :func:`~cdp_tiktok.jsonagree.agreeing_value`). Anything else, and
    anything orjson refuses (invalid UTF-8, a lone surrogate, a byte order mark, ``NaN``,
    a number beyond a double, ...), is read by :func:`parse_json_exact`, so refusals keep
    its wording."""
    return read_json(data)[0]


def read_json(data: bytes) -> tuple[Any, bool]:
    """:func:`parse_json`'s value, and whether a string of it may hold a lone UTF-16
    surrogate (see :func:`lone_surrogate_at`): ``False`` when orjson read it, since
    orjson refuses every lone surrogate, escaped or raw; ``True`` when the standard
    library did (it keeps them)."""
    return loads_agreeing(data, parse_json_exact)


def _not_text(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _member(pointer: str, key: object) -> str:
    name = str(key)
    if _not_text(name):  # the pointer is answered as UTF-8: the surrogate is spelled out
        name = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{pointer}/{name.replace('~', '~0').replace('/', '~1')}"


def lone_surrogate_at(value: Any) -> str | None:
    """The JSON pointer of the first string of ``value`` (a member name or a string
    value) holding a lone UTF-16 surrogate, which has no UTF-8 form and so cannot be
    hashed, sized or stored; ``None`` when every string is Unicode text."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        pointer, item = pending.pop()
        if type(item) is str:
            if _not_text(item):
                return pointer
        elif type(item) is dict:
            for key, inner in item.items():
                member = _member(pointer, key)
                if type(key) is str and _not_text(key):
                    return member
                pending.append((member, inner))
        elif type(item) is list:
            pending.extend((_member(pointer, index), inner) for index, inner in enumerate(item))
    return None
