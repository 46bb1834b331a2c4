"""The embedded CDP host: plugin manager, routing, and a Segment-style Python API.

The host owns every piece of I/O (identity store, outbox); plugins stay pure. Plugin
loading (built-ins, entry points, blocking, tracing) lives in :mod:`cdp_tiktok.plugins`;
the built-in plugins are marked ``trylast`` so that a user plugin can override or wrap
them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from cdp_tiktok.destination import Destination
from cdp_tiktok.events import BatchKey, OutgoingEvent, Verdict
from cdp_tiktok.messages import validate_message
from cdp_tiktok.plugins import BLOCK_ENV as BLOCK_ENV  # re-exported: host's public names
from cdp_tiktok.plugins import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from cdp_tiktok.plugins import PluginError as PluginError
from cdp_tiktok.plugins import build_plugin_manager
from cdp_tiktok.settings import SettingsError, TikTokSettings

if TYPE_CHECKING:
    from cdp_tiktok.delivery.outbox import Outbox
    from cdp_tiktok.identity import IdentityStore

CALL_HOOKS: Mapping[str, str] = {
    "track": "cdp_on_track",
    "identify": "cdp_on_identify",
    "page": "cdp_on_page",
    "screen": "cdp_on_screen",
    "group": "cdp_on_group",
    "alias": "cdp_on_alias",
}


SEGMENT_FIELD_NAMES: Mapping[str, str] = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "previous_id": "previousId",
    "group_id": "groupId",
    "message_id": "messageId",
    "event": "event",
    "name": "name",
    "category": "category",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
    "timestamp": "timestamp",
    "integrations": "integrations",
}
"""Python API argument names (analytics-python style) to Segment message fields."""


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One registered plugin, where it came from, and the hooks it implements."""

    name: str
    source: str
    hooks: tuple[str, ...]


def _plain_hookexec() -> object:
    """What a plugin manager calls hook implementations through when nothing monitors
    its calls (pluggy's own loop); ``None`` if this pluggy keeps it elsewhere."""
    return getattr(pluggy.PluginManager("cdp_tiktok.probe"), "_inner_hookexec", None)


_PLAIN_HOOKEXEC = _plain_hookexec()
_CALL_ARGNAMES = ("message", "destination")


class HookFacade:
    """Typed calls into the plugin manager's hooks, so callers stay type-checked.

    A call hook whose only implementation is a built-in plugin's (``builtins`` names
    them; see :meth:`Host.overrides`) is called directly, without pluggy's dispatch: the
    same function, the same arguments, the same result. That holds only while nothing
    else implements the hook and nothing monitors hook calls (``--trace-plugins``, or
    any ``add_hookcall_monitoring``); otherwise the call goes through pluggy.
    """

    def __init__(self, pm: pluggy.PluginManager, builtins: Collection[str] = ()) -> None:
        self._pm = pm
        self._hook = pm.hook
        self._sole: dict[str, Any] = {}
        for name in CALL_HOOKS.values():
            impls = getattr(pm.hook, name).get_hookimpls()
            if len(impls) == 1 and _plain_call(impls[0], builtins):
                self._sole[name] = impls[0]

    def on_message(
        self, message: Mapping[str, Any], destination: Destination
    ) -> list[OutgoingEvent]:
        """Call the hook for the message's type; return every implementation's events."""
        name = CALL_HOOKS[message["type"]]
        caller = getattr(self._hook, name)
        sole = self._sole.get(name)
        if sole is not None and _PLAIN_HOOKEXEC is not None:
            impls = caller.get_hookimpls()
            if len(impls) == 1 and impls[0] is sole and self._pm._inner_hookexec is _PLAIN_HOOKEXEC:
                # ``function`` is read at each call: tracing may have wrapped it since.
                events: list[OutgoingEvent] | None = sole.function(message, destination)
                return list(events) if events else []
        found: list[OutgoingEvent] = []
        for result in caller(message=message, destination=destination):
            if result:
                found.extend(result)
        return found

    def batch_key(self, event: OutgoingEvent) -> BatchKey:
        """The key that decides which events may share a request."""
        key: BatchKey | None = self._hook.cdp_batch_key(event=event)
        return event.key if key is None else key

    def encode_batch(
        self, key: BatchKey, events: Sequence[dict[str, Any]], partner_name: str | None
    ) -> bytes:
        """One encoded request body; raises when no plugin encodes."""
        body: bytes | None = self._hook.cdp_encode_batch(
            key=key, events=events, partner_name=partner_name
        )
        if body is None:
            raise PluginError(
                "no plugin implements cdp_encode_batch (is the delivery plugin blocked?)"
            )
        return body

    def classify_response(
        self,
        status_code: int | None,
        body: bytes,
        error: str | None,
        batch_size: int,
        *,
        retry_after: float | None = None,
    ) -> Verdict:
        """Classify one attempt; raises when no plugin classifies."""
        verdict: Verdict | None = self._hook.cdp_classify_response(
            status_code=status_code, body=body, error=error, batch_size=batch_size
        )
        if verdict is None:
            raise PluginError(
                "no plugin implements cdp_classify_response (is the delivery plugin blocked?)"
            )
        if retry_after is not None and verdict.retry_after is None:
            from dataclasses import replace

            verdict = replace(verdict, retry_after=retry_after)
        return verdict


def _plain_call(impl: Any, builtins: Collection[str]) -> bool:
    """Whether ``impl`` is a built-in's ordinary implementation taking (message, destination)."""
    return (
        impl.plugin_name in builtins
        and not getattr(impl, "hookwrapper", False)
        and not getattr(impl, "wrapper", False)
        and tuple(impl.argnames) == _CALL_ARGNAMES
    )


class Host:
    """Builds the plugin manager, routes validated messages to destination hooks.

    Guarantees: every message is validated before any hook sees it; a destination
    receives a message only if the message's ``integrations`` object enables it
    (``All`` defaults to true; a destination's own key, or one of its aliases, wins over
    ``All``); hooks receive the same validated message and must not modify it; when an
    ``outbox`` is given, :meth:`process` returns only after the events are durably
    enqueued.

    ``identity`` is the identity store used to enrich events; the default is an
    in-memory store (nothing written to disk), ``None`` disables enrichment.

    The rule for unsendable settings: a host *with* an ``outbox`` enqueues for delivery,
    so it refuses (:class:`~cdp_tiktok.settings.SettingsError`, naming the destination and
    the setting) to build when a TikTok destination's settings cannot send: no event
    source id (pixel code) or no access token. A host *without* an outbox only maps
    (``cdp-tiktok map``, ``validate``, tests) and needs no credentials.
    """

    def __init__(
        self,
        settings: TikTokSettings | None = None,
        *,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
        builtins: bool = True,
        identity: IdentityStore | str | None = "memory://",
        outbox: Outbox | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings or TikTokSettings()
        self.pm, self._sources = build_plugin_manager(
            self.settings,
            plugins=plugins,
            load_entry_points=load_entry_points,
            builtins=builtins,
            environ=os.environ if environ is None else environ,
        )
        builtin_names = [name for name, source in self._sources.items() if source == "built-in"]
        self.hooks = HookFacade(self.pm, builtin_names)
        if isinstance(identity, str):
            from cdp_tiktok.backends import open_identity_store

            identity = open_identity_store(identity, self.settings.identity_ttl_days * 86400.0)
        self.identity = identity
        self.outbox = outbox
        self.filters = self._collect_filters()
        self.mapping_dirs = self._collect_mapping_dirs()
        self.destinations = self._collect_destinations()
        if outbox is not None:
            self._check_sendable()

    # --- plugin discovery ---------------------------------------------------------

    def _each_impl(self, hook_name: str) -> Iterable[tuple[str, Callable[..., Any]]]:
        caller = getattr(self.pm.hook, hook_name)
        # pluggy lists implementations last-to-first; registration order is the reverse.
        for impl in reversed(caller.get_hookimpls()):
            yield impl.plugin_name, impl.function

    def _collect_filters(self) -> dict[str, Callable[..., Any]]:
        filters: dict[str, Callable[..., Any]] = {}
        owners: dict[str, str] = {}
        for plugin_name, function in self._each_impl("cdp_register_filters"):

            def register(name: str, fn: Callable[..., Any], _plugin: str = plugin_name) -> None:
                if not callable(fn):
                    raise PluginError(
                        f"plugin {_plugin!r} registered filter {name!r}: not callable"
                    )
                if name in owners:
                    raise PluginError(
                        f"filter {name!r} registered by both {owners[name]!r} and {_plugin!r}"
                    )
                owners[name] = _plugin
                filters[name] = fn

            function(register=register)
        return filters

    def _collect_mapping_dirs(self) -> list[Path]:
        dirs: list[Path] = []
        for plugin_name, function in self._each_impl("cdp_register_mapping_dirs"):

            def register(path: Path, _plugin: str = plugin_name) -> None:
                path = Path(path)
                if not path.is_dir():
                    raise PluginError(
                        f"plugin {_plugin!r} registered mapping directory {path}: not a directory"
                    )
                dirs.append(path)

            function(register=register)
        return dirs

    def _collect_destinations(self) -> dict[str, Destination]:
        found: dict[str, Destination] = {}
        owners: dict[str, str] = {}
        for plugin_name, function in self._each_impl("cdp_register_destinations"):

            def register(destination: Destination, _plugin: str = plugin_name) -> None:
                if destination.name in found:
                    raise PluginError(
                        f"destination {destination.name!r} registered twice (by {_plugin!r})"
                    )
                for key in destination.integration_keys():
                    # One plugin's destinations may share an alias (``TikTok`` for all).
                    if key in owners and (owners[key] != _plugin or key == destination.name):
                        raise PluginError(
                            f"destination key {key!r} registered by both {owners[key]!r} "
                            f"and {_plugin!r}"
                        )
                    owners[key] = _plugin
                found[destination.name] = destination

            function(register=register)
        for destination in found.values():
            destination.state.setdefault("filters", self.filters)
            destination.state.setdefault("mapping_dirs", self.mapping_dirs)
            destination.state.setdefault("identity", self.identity)
        return found

    def _check_sendable(self) -> None:
        for destination in self.destinations.values():
            settings = destination.settings
            if not isinstance(settings, TikTokSettings):
                continue
            try:
                settings.validate(need_credentials=True)
            except SettingsError as exc:
                self.close()
                raise SettingsError(
                    f"destination {destination.name!r} cannot deliver, so its events would all "
                    f"be dead-lettered: {exc}. A Host without an outbox maps without credentials."
                ) from None

    def plugin_info(self) -> list[PluginInfo]:
        """Every registered plugin, where it came from, and the hooks it implements."""
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name, self._sources.get(name, "registered"), hooks))
        return sorted(infos, key=lambda info: (info.source != "built-in", info.name))

    def overrides(self, hook_name: str) -> bool:
        """Whether a plugin other than the built-ins implements ``hook_name``."""
        caller = getattr(self.pm.hook, hook_name)
        return any(
            self._sources.get(impl.plugin_name) != "built-in" for impl in caller.get_hookimpls()
        )

    def plugin(self, name: str) -> object | None:
        """The registered plugin object called ``name``, if any."""
        return self.pm.get_plugin(name)

    # --- routing ------------------------------------------------------------------

    def route(self, message: Mapping[str, Any]) -> list[Destination]:
        """The destinations the message's ``integrations`` object enables."""
        integrations = message.get("integrations")
        if not integrations:  # absent, null or {}: every destination (the usual message)
            return list(self.destinations.values())
        default = integrations.get("All", True) is not False
        enabled = []
        for destination in self.destinations.values():
            choice: Any = None
            for key in destination.integration_keys():
                if key in integrations:
                    choice = integrations[key]
                    break
            if default if choice is None else choice is not False:
                enabled.append(destination)
        return enabled

    def process(
        self,
        message: Mapping[str, Any],
        *,
        validated: bool = False,
        routes: Sequence[Destination] | None = None,
    ) -> list[OutgoingEvent]:
        """Validate ``message``, route it, and return (and enqueue) the events it produced.

        ``routes``: what :meth:`route` returned for this message, when the caller already
        asked (it is not asked again). Raises :class:`cdp_tiktok.messages.MessageError` for
        an invalid message, before any hook runs: nothing is half-processed. With an
        outbox, the message is mapped with what other processes committed to the identity
        store before the call, and its own identity writes are durable (:meth:`flush`)
        before its events are enqueued and before it returns.
        """
        valid = dict(message) if validated else validate_message(message)
        if self.outbox is not None:
            self.flush()
        events: list[OutgoingEvent] = []
        on_message = self.hooks.on_message
        for destination in self.route(valid) if routes is None else routes:
            events.extend(on_message(valid, destination))
        if self.outbox is not None:
            self.flush()
            if events:
                self.outbox.enqueue(events)
        return events

    def flush(self) -> None:
        """Sync the identity store: the identity writes of the messages processed so far
        become durable and visible to other processes, and what other processes committed
        is seen by the next messages (a store that writes through, or none, has nothing
        to do). Whoever commits mapped events to an outbox calls this first, so that no
        event in the outbox depends on identity writes that are not durable yet."""
        flush = getattr(self.identity, "flush", None)
        if flush is not None:
            flush()

    # --- Segment-style Python API -------------------------------------------------

    def _call(self, kind: str, arguments: Mapping[str, Any]) -> list[OutgoingEvent]:
        """Build a Segment message from a Python API call's arguments and process it."""
        message: dict[str, Any] = {"type": kind}
        for name, value in arguments.items():
            if name == "self" or value is None:
                continue
            key = SEGMENT_FIELD_NAMES[name]
            message[key] = value.isoformat() if isinstance(value, datetime) else value
        return self.process(message)

    def track(
        self,
        user_id: str | None = None,
        event: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | float | None = None,
        anonymous_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> list[OutgoingEvent]:
        """Process a ``track`` call (analytics-python style); returns the events produced."""
        return self._call("track", locals())

    def identify(
        self,
        user_id: str | None = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | float | None = None,
        anonymous_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> list[OutgoingEvent]:
        """Process an ``identify`` call; its hashed keys enrich the user's later events."""
        return self._call("identify", locals())

    def page(
        self,
        user_id: str | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | float | None = None,
        anonymous_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> list[OutgoingEvent]:
        """Process a ``page`` call; returns the events produced."""
        return self._call("page", locals())

    def screen(
        self,
        user_id: str | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | float | None = None,
        anonymous_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> list[OutgoingEvent]:
        """Process a ``screen`` call; returns the events produced."""
        return self._call("screen", locals())

    def group(
        self,
        user_id: str | None = None,
        group_id: str | None = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | float | None = None,
        anonymous_id: str | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> list[OutgoingEvent]:
        """Process a ``group`` call; returns the events produced."""
        return self._call("group", locals())

    def alias(
        self,
        previous_id: str | None = None,
        user_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | str | float | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> list[OutgoingEvent]:
        """Process an ``alias`` call; links the two ids in the identity store."""
        return self._call("alias", locals())

    def close(self) -> None:
        """Close the identity store and outbox the host owns."""
        if self.identity is not None:
            self.identity.close()
        if self.outbox is not None:
            self.outbox.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
