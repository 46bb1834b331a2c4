"""Storage backends found like plugins: an outbox or identity store url picks its backend.

A url's scheme (``sqlite``, ``memory``, ``postgresql``, ...) names a backend registered
through the :func:`~cdp_tiktok.hookspecs.cdp_register_outbox_backends` and
:func:`~cdp_tiktok.hookspecs.cdp_register_identity_stores` hooks. The built-in backends
are registered exactly like third-party ones (entry-point group ``cdp_tiktok``, with the
host's blocking and tracing switches, :mod:`cdp_tiktok.plugins`), so the
interface modules (:mod:`cdp_tiktok.delivery.outbox`, :mod:`cdp_tiktok.identity`) import
no backend, and a plugin adds one (say ``kafka://``) without touching this package.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from cdp_tiktok.delivery.outbox import Outbox
    from cdp_tiktok.identity import IdentityStore

BUILTIN_BACKENDS = (
    "cdp_tiktok.delivery.sqlite_outbox",
    "cdp_tiktok.delivery.memory_outbox",
    "cdp_tiktok.delivery.postgres_outbox",
    "cdp_tiktok.identity_backends",
    "cdp_tiktok.postgres_identity",
)
"""Modules of the built-in backends, each registering its schemes with a hook."""


class BackendError(ValueError):
    """A url names no registered backend, or two plugins registered one scheme."""


def scheme_of(url: str) -> str:
    """The scheme of ``url`` (``sqlite`` for ``sqlite:///x.db``), or ``""`` without one."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def _plugin_manager(extra: Iterable[object] = ()) -> pluggy.PluginManager:
    """The built-in backend modules, ``extra`` plugins and the entry-point plugins
    (loaded, blocked and traced as for the host: :mod:`cdp_tiktok.plugins`)."""
    from cdp_tiktok.plugins import build_plugin_manager
    from cdp_tiktok.settings import TikTokSettings

    modules = [importlib.import_module(name) for name in BUILTIN_BACKENDS]
    pm, _ = build_plugin_manager(
        TikTokSettings(), plugins=[*modules, *extra], builtins=False, environ=os.environ
    )
    return pm


def _collect(pm: pluggy.PluginManager, hook_name: str) -> dict[str, Any]:
    factories: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):

        def register(scheme: str, factory: Any, _plugin: str = impl.plugin_name) -> None:
            key = scheme.lower()
            if key in owners:
                raise BackendError(
                    f"{hook_name}: scheme {key!r} registered by both {owners[key]!r} "
                    f"and {_plugin!r}"
                )
            owners[key], factories[key] = _plugin, factory

        impl.function(register=register)
    return factories


@functools.cache
def _registry(hook_name: str) -> dict[str, Any]:
    return _collect(_plugin_manager(), hook_name)


def registered_schemes(kind: str = "outbox") -> list[str]:
    """The schemes registered for ``kind`` (``outbox`` or ``identity``), sorted."""
    return sorted(_registry(_HOOKS[kind]))


_LABELS = {"outbox": "outbox url", "identity": "identity store URL"}
_HOOKS = {"outbox": "cdp_register_outbox_backends", "identity": "cdp_register_identity_stores"}


def _factory(kind: str, url: str, plugins: Iterable[object] | None) -> Any:
    hook_name = _HOOKS[kind]
    if plugins is None:
        factories = _registry(hook_name)
    else:
        factories = _collect(_plugin_manager(plugins), hook_name)
    factory = factories.get(scheme_of(url))
    if factory is None:
        accepted = ", ".join(f"{s}://" for s in sorted(factories))
        raise BackendError(f"unsupported {_LABELS[kind]} {url!r}; accepted schemes: {accepted}")
    return factory


def open_outbox(url: str, *, plugins: Iterable[object] | None = None) -> Outbox:
    """Open the outbox at ``url`` with the backend registered for its scheme.

    Built-in forms: ``sqlite:///relative/path.db`` (relative to the working directory,
    created with its directory if needed), ``sqlite:////absolute/path.db``, ``memory://``
    (a new, empty, in-process outbox) and ``postgresql://user@host:port/db``. ``plugins``
    are extra plugin objects whose backends are considered too (tests). An unknown
    scheme raises :class:`BackendError` (a ``ValueError``) naming the url and the
    accepted schemes.
    """
    factory: Callable[[str], Outbox] = _factory("outbox", url, plugins)
    return factory(url)


def open_identity_store(
    url: str, ttl_seconds: float, *, plugins: Iterable[object] | None = None
) -> IdentityStore:
    """Open the identity store at ``url``; entries expire after ``ttl_seconds``.

    Built-in forms: ``sqlite:///relative/path``, ``sqlite:////absolute/path``,
    ``memory://`` and ``postgresql://user@host:port/db``. Raises ``ValueError`` for a
    non-positive ttl or an unknown scheme.
    """
    if ttl_seconds <= 0:
        raise ValueError("identity ttl must be positive")
    factory: Callable[[str, float], IdentityStore] = _factory("identity", url, plugins)
    return factory(url, ttl_seconds)
