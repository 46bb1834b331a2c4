"""Reading a request body within its size limit, gzip included, and parsing its JSON.

Every refusal is a :class:`Refusal` carrying the HTTP status, a stable ``code`` (also
the ``reason`` label of the refusal metric) and a sentence that never quotes the body.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from typing import Any


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


def parse_json(data: bytes) -> Any:
    """The JSON value of ``data`` (strict: no ``NaN`` or ``Infinity``); a refusal says
    where the JSON breaks (never what)."""
    try:
        return json.loads(data, parse_constant=_not_json)
    except UnicodeDecodeError:
        raise Refusal(400, "malformed_json", "the body is not UTF-8 text") from None
    except RecursionError:
        raise Refusal(400, "malformed_json", "the JSON is nested too deeply") from None
    except ValueError as exc:  # NaN, Infinity
        raise Refusal(400, "malformed_json", f"malformed JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise Refusal(
            400,
            "malformed_json",
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
        ) from None
