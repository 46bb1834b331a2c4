"""Registration of the built-in identity stores (``memory://`` and ``sqlite:///``)."""

from __future__ import annotations

from typing import Any

from cdp_tiktok.hookspecs import hookimpl
from cdp_tiktok.identity import IdentityStore, MemoryIdentityStore, SQLiteIdentityStore

_SQLITE = "sqlite:///"


def open_builtin_store(url: str, ttl_seconds: float) -> IdentityStore:
    """The store of a ``memory://`` or ``sqlite:///path`` url."""
    if url == "memory://":
        return MemoryIdentityStore(ttl_seconds)
    if url.startswith(_SQLITE) and len(url) > len(_SQLITE):
        return SQLiteIdentityStore(url[len(_SQLITE) :], ttl_seconds)
    raise ValueError(f"unsupported identity store URL {url!r}: use sqlite:///path or memory://")


@hookimpl
def cdp_register_identity_stores(register: Any) -> None:
    """The built-in ``memory://`` and ``sqlite:///`` identity stores."""
    register("memory", open_builtin_store)
    register("sqlite", open_builtin_store)
