"""Registration of the built-in identity stores (``memory://`` and ``sqlite:///``).

A ``sqlite:///`` url opens the SQLite store behind its cache with write-behind batching
(:mod:`cdp_tiktok.identity_cache`): lookups from memory, writes durable at ``flush()``.
"""

from __future__ import annotations

from typing import Any

from cdp_tiktok.hookspecs import hookimpl
from cdp_tiktok.identity import IdentityStore, MemoryIdentityStore, SQLiteIdentityStore
from cdp_tiktok.identity_cache import CachedIdentityStore

_SQLITE = "sqlite:///"


def open_builtin_store(url: str, ttl_seconds: float) -> IdentityStore:
    """The store of a ``memory://`` or ``sqlite:///path`` url (the latter cached)."""
    if url == "memory://":
        return MemoryIdentityStore(ttl_seconds)
    if url.startswith(_SQLITE) and len(url) > len(_SQLITE):
        return CachedIdentityStore(SQLiteIdentityStore(url[len(_SQLITE) :], ttl_seconds))
    raise ValueError(f"unsupported identity store URL {url!r}: use sqlite:///path or memory://")


@hookimpl
def cdp_register_identity_stores(register: Any) -> None:
    """The built-in ``memory://`` and ``sqlite:///`` identity stores."""
    register("memory", open_builtin_store)
    register("sqlite", open_builtin_store)
