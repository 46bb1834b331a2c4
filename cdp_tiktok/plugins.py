"""Plugin loading: the plugin manager, built-in plugins, entry points, blocking, tracing.

The built-in plugins (:func:`builtin_plugins`: the TikTok destination and the delivery
plugin) are registered exactly like third-party ones. Entry points of the
``cdp_tiktok`` group load next. Two environment switches:

* ``CDP_TIKTOK_DISABLE_PLUGINS=a,b``: plugin names (entry-point or built-in) not to load;
* ``CDP_TIKTOK_TRACE_PLUGINS=1`` (or ``cdp-tiktok --trace-plugins``): print every hook
  call to stderr, one line per implementation called: the hook, the plugin that
  answered, its arguments and its result, with personal fields redacted
  (:mod:`cdp_tiktok.redaction`; match keys appear hashed, as TikTok receives them).
  Off by default; when off nothing is wrapped, so it costs nothing.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import is_dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from cdp_tiktok import hookspecs

if TYPE_CHECKING:
    from cdp_tiktok.settings import TikTokSettings

ENTRY_POINT_GROUP = "cdp_tiktok"
BLOCK_ENV = "CDP_TIKTOK_DISABLE_PLUGINS"
"""Comma-separated plugin names the host must not load (entry-point or built-in names)."""
TRACE_ENV = "CDP_TIKTOK_TRACE_PLUGINS"
"""Set to ``1`` (or ``true``/``yes``/``on``) to trace every hook call on stderr."""
TRACE_PREFIX = "cdp-tiktok trace:"
_TRUE = frozenset({"1", "true", "yes", "on"})
MAX_TRACE_VALUE = 4000


class PluginError(RuntimeError):
    """A plugin misbehaved at registration; the message names the plugin."""


def blocked_names(environ: Mapping[str, str]) -> set[str]:
    """The plugin names :data:`BLOCK_ENV` blocks."""
    return {name.strip() for name in environ.get(BLOCK_ENV, "").split(",") if name.strip()}


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    """Whether :data:`TRACE_ENV` asks for hook-call tracing."""
    return environ.get(TRACE_ENV, "").strip().lower() in _TRUE


def builtin_plugins(settings: TikTokSettings) -> list[tuple[str, object]]:
    """The built-in plugins, by name, registered ``trylast`` so user plugins win."""
    from cdp_tiktok.delivery.plugin import DeliveryPlugin
    from cdp_tiktok.tiktok.destination import TikTokPlugin

    return [("tiktok", TikTokPlugin(settings)), ("delivery", DeliveryPlugin())]


def build_plugin_manager(
    settings: TikTokSettings,
    *,
    plugins: Iterable[object] = (),
    load_entry_points: bool = True,
    builtins: bool = True,
    environ: Mapping[str, str],
) -> tuple[pluggy.PluginManager, dict[str, str]]:
    """A plugin manager with the built-ins, ``plugins`` and entry points registered.

    Returns it and, per plugin name, where the plugin came from (``built-in``,
    ``registered`` or ``entry point …``). Raises :class:`PluginError` naming a plugin
    that fails to load.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    sources: dict[str, str] = {}
    blocked = blocked_names(environ)
    for name in blocked:
        pm.set_blocked(name)
    if builtins:
        for name, plugin in builtin_plugins(settings):
            if name not in blocked:
                pm.register(plugin, name=name)
                sources[name] = "built-in"
    for plugin in plugins:
        own_name = getattr(plugin, "name", None)
        registered = pm.register(plugin, name=own_name if isinstance(own_name, str) else None)
        if registered is not None:
            sources[registered] = "registered"
    if load_entry_points:
        _load_entry_points(pm, blocked, sources)
    if tracing_enabled(environ):
        trace_hook_calls(pm)
    return pm, sources


def _load_entry_points(
    pm: pluggy.PluginManager, blocked: set[str], sources: dict[str, str]
) -> None:
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or ep.name in blocked:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} from {dist.metadata['Name']} failed to load: {exc}"
                ) from exc
            pm.register(plugin, name=ep.name)
            sources[ep.name] = f"entry point {ep.value} ({dist.metadata['Name']} {dist.version})"


# --- tracing ---------------------------------------------------------------------------


def shown(value: Any) -> Any:
    """A JSON-ready, redacted picture of a hook argument or result."""
    from cdp_tiktok.destination import Destination
    from cdp_tiktok.events import OutgoingEvent
    from cdp_tiktok.redaction import redact

    if isinstance(value, OutgoingEvent):
        key = value.key
        return {
            "rule": value.rule,
            "key": [key.destination, key.event_source, key.event_source_id, key.test_event_code],
            "data": redact(value.data),
        }
    if isinstance(value, Destination):
        return f"<Destination {value.name!r} of plugin {value.plugin!r}>"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple):
        return [shown(v) for v in value]
    if isinstance(value, Mapping):
        return redact(dict(value))
    if callable(value):
        return f"<{getattr(value, '__name__', 'callable')}>"
    if is_dataclass(value):
        return repr(value)
    return value


def _text(value: Any) -> str:
    text = json.dumps(shown(value), ensure_ascii=False, sort_keys=False, default=repr)
    if len(text) > MAX_TRACE_VALUE:
        return text[:MAX_TRACE_VALUE] + f"… ({len(text)} chars)"
    return text


def _traced(
    hook: str, plugin: str, function: Callable[..., Any], argnames: Sequence[str]
) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:  # pluggy passes them by position
        started = time.perf_counter()
        named = {**dict(zip(argnames, args, strict=False)), **kwargs}
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:
            _emit(hook, plugin, named, f"raised {type(exc).__name__}: {exc}", started)
            raise
        _emit(hook, plugin, named, _text(result), started)
        return result

    call.__wrapped__ = function  # type: ignore[attr-defined]
    call.__cdp_traced__ = True  # type: ignore[attr-defined]
    return call


def _emit(hook: str, plugin: str, named: Mapping[str, Any], result: str, started: float) -> None:
    arguments = ", ".join(f"{name}={_text(value)}" for name, value in named.items())
    took = (time.perf_counter() - started) * 1000
    sys.stderr.write(
        f"{TRACE_PREFIX} {hook} <- {plugin}({arguments}) -> {result} ({took:.2f} ms)\n"
    )


def trace_hook_calls(pm: pluggy.PluginManager) -> None:
    """Wrap every registered hook implementation so each call is printed to stderr.

    Implementations registered later are wrapped on their hook's next call (pluggy's
    ``add_hookcall_monitoring``). Wrappers (``hookwrapper``/``wrapper``) are left as
    they are.
    """

    def wrap_all(hook_name: str, hook_impls: Any, kwargs: Any = None) -> None:
        for impl in hook_impls:
            if getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False):
                continue
            if getattr(impl.function, "__cdp_traced__", False):
                continue
            impl.function = _traced(hook_name, impl.plugin_name, impl.function, impl.argnames)

    def after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: Any) -> None:
        return None

    for name in hookspecs.HOOK_NAMES:
        wrap_all(name, getattr(pm.hook, name).get_hookimpls())
    pm.add_hookcall_monitoring(wrap_all, after)
