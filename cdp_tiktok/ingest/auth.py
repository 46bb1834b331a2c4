"""Write-key authentication as Segment does it: HTTP Basic with the key as user name
(empty password), or ``writeKey`` in the body.

A key is compared with every configured key in constant time (no early exit), and
only the source *name* of a matching key ever leaves this module.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping


def basic_user(header: str | None) -> str | None:
    """The user name of an ``Authorization: Basic ...`` header, or ``None``."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


class WriteKeys:
    """The configured write keys, each known by a source name (``source -> key``)."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = [(name, key.encode("utf-8")) for name, key in keys.items() if key]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"WriteKeys({len(self._keys)} keys)"

    @property
    def sources(self) -> list[str]:
        """The source names (never the keys)."""
        return [name for name, _ in self._keys]

    def source(self, candidate: str | None) -> str | None:
        """The source name of ``candidate`` if it is a configured key, else ``None``.

        Every configured key is compared (``hmac.compare_digest``), matching or not, so the
        time taken does not tell which key, or how much of one, was right.
        """
        if not candidate:
            return None
        given = candidate.encode("utf-8")
        found: str | None = None
        for name, key in self._keys:
            if hmac.compare_digest(given, key) and found is None:
                found = name
        return found
