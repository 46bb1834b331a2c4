"""The built-in TikTok destination plugin: Segment calls -> TikTok events via mappings.

:class:`TikTokPlugin` registers the ``TikTok`` destination (alias ``TikTok
Conversions``, the key Segment users already put in ``integrations``) and implements
one hook per call type. Every hook returns ``None`` for destinations of other plugins.

Per destination, the mapping set is compiled once (first message) and cached in
``destination.state["mapping_set"]``. Besides the keys the host fills (``filters``,
``mapping_dirs``, ``identity``), the plugin reads two optional keys that tools set:
``explain`` (collect explain lines) and ``observer`` (a callable receiving
``(message, MapResult)`` after each message, used by ``cdp-tiktok map``).

Identity: an ``identify`` call's traits (email, phone) and ``userId`` (as external_id)
are hashed and remembered for its ``userId``/``anonymousId``; an ``alias`` call links
``previousId`` and ``userId``; every event lacking email, phone or external_id is
filled from the store (keys on the event win). Only hashed keys reach the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from cdp_tiktok.destination import Destination
from cdp_tiktok.events import MapResult, OutgoingEvent
from cdp_tiktok.hookspecs import hookimpl
from cdp_tiktok.mapping.defaults import mapping_dirs
from cdp_tiktok.mapping.engine import MappingSet, load_mapping_set
from cdp_tiktok.matchkeys import LIST_KEYS
from cdp_tiktok.settings import TikTokSettings

PLUGIN_NAME = "tiktok"
DESTINATION_NAME = "TikTok"
DESTINATION_ALIASES = ("TikTok Conversions",)

log = logging.getLogger("cdp_tiktok.tiktok")
log.addHandler(logging.NullHandler())

Message = dict[str, Any]


def _traits(message: Mapping[str, Any]) -> Mapping[str, Any]:
    traits = message.get("traits")
    return traits if isinstance(traits, dict) else {}


def _context_traits(message: Mapping[str, Any]) -> Mapping[str, Any]:
    context = message.get("context")
    traits = context.get("traits") if isinstance(context, dict) else None
    return traits if isinstance(traits, dict) else {}


class TikTokPlugin:
    """The TikTok destination; ``settings`` are the defaults of the destination it
    registers (each destination's own ``settings`` are used when mapping)."""

    name = PLUGIN_NAME

    def __init__(self, settings: TikTokSettings) -> None:
        self.settings = settings

    # --- registration ---------------------------------------------------------------

    @hookimpl(trylast=True)
    def cdp_register_destinations(self, register: Callable[[Destination], None]) -> None:
        """Register the ``TikTok`` destination (alias ``TikTok Conversions``), or, with a
        ``destinations:`` list in the settings, one destination per entry, each also
        addressed by ``TikTok`` and ``TikTok Conversions``."""
        if self.settings.destinations:
            from cdp_tiktok.destinations import SHARED_KEYS, destination_settings

            for name, settings in destination_settings(self.settings).items():
                register(
                    Destination(name, plugin=PLUGIN_NAME, settings=settings, aliases=SHARED_KEYS)
                )
            return
        register(
            Destination(
                DESTINATION_NAME,
                plugin=PLUGIN_NAME,
                settings=self.settings,
                aliases=DESTINATION_ALIASES,
            )
        )

    # --- mapping ----------------------------------------------------------------------

    def mapping_set(self, destination: Destination) -> MappingSet:
        """The destination's compiled mapping set (compiled on first use, then cached).

        Raises :class:`~cdp_tiktok.mapping.MappingLoadError` when a mapping file has an
        error.
        """
        state = destination.state
        cached = state.get("mapping_set")
        if isinstance(cached, MappingSet):
            return cached
        settings = destination.settings
        if not isinstance(settings, TikTokSettings):
            settings = self.settings
        compiled = load_mapping_set(
            mapping_dirs(settings, list(state.get("mapping_dirs") or ())),
            filters=state.get("filters") or {},
            settings=settings,
            destination=destination.name,
        )
        state["mapping_set"] = compiled
        return compiled

    def map_message(
        self, message: Mapping[str, Any], destination: Destination, *, explain: bool = False
    ) -> MapResult:
        """Map one validated message for ``destination``: remember identify keys, link
        alias ids, map through the rules, enrich from the identity store.

        Warnings are also logged on ``cdp_tiktok.tiktok`` (they never contain raw
        match keys or values).
        """
        state = destination.state
        explain = explain or bool(state.get("explain"))
        mapping = self.mapping_set(destination)
        identity = state.get("identity")
        notes: list[str] = []
        dropped: Mapping[str, int] = {}
        regions: Mapping[str, int] = {}
        message_type = message.get("type")
        if identity is not None and message_type == "identify":
            remembered, dropped, regions = self._remember(message, mapping, identity)
            notes.extend(remembered)
        elif identity is not None and message_type == "alias":
            previous, user = message.get("previousId"), message.get("userId")
            if isinstance(previous, str) and isinstance(user, str) and previous and user:
                identity.link(previous, user)
                notes.append("alias: linked previousId and userId in the identity store")
        stored: Callable[[], Mapping[str, list[str]]] | None = None
        if identity is not None:
            user_id, anonymous_id = message.get("userId"), message.get("anonymousId")

            def stored() -> Mapping[str, list[str]]:
                found: Mapping[str, list[str]] = identity.lookup(
                    user_id if isinstance(user_id, str) else None,
                    anonymous_id if isinstance(anonymous_id, str) else None,
                )
                return found

        result = mapping.map(message, stored_keys=stored, explain=explain)
        for reason, count in dropped.items():
            result.dropped_keys[reason] = result.dropped_keys.get(reason, 0) + count
        for label, count in regions.items():
            result.phone_regions[label] = result.phone_regions.get(label, 0) + count
        if explain and notes:
            result.explain[:0] = notes
        for warning in result.warnings:
            log.warning("message %s: %s", message.get("messageId"), warning)
        observer = state.get("observer")
        if observer is not None:
            observer(message, result)
        return result

    def _remember(
        self, message: Mapping[str, Any], mapping: MappingSet, identity: Any
    ) -> tuple[list[str], Mapping[str, int], Mapping[str, int]]:
        traits, context_traits = _traits(message), _context_traits(message)
        raw: dict[str, Any] = {
            "email": [traits.get("email"), context_traits.get("email")],
            "phone": [traits.get("phone"), context_traits.get("phone")],
            "external_id": message.get("userId"),
        }
        normalized = mapping.normalizer.normalize_user(raw, message)
        keys = normalized.user
        hashed = {k: keys[k] for k in LIST_KEYS if k in keys}
        user_id, anonymous_id = message.get("userId"), message.get("anonymousId")
        if not hashed and not (user_id and anonymous_id):
            return (
                ["identify: nothing to remember (no email, phone or userId)"],
                normalized.dropped,
                normalized.phone_regions,
            )
        identity.remember(
            user_id if isinstance(user_id, str) else None,
            anonymous_id if isinstance(anonymous_id, str) else None,
            hashed,
        )
        names = ", ".join(sorted(hashed)) or "no keys"
        return (
            [f"identify: remembered {names} (hashed) in the identity store"],
            normalized.dropped,
            normalized.phone_regions,
        )

    def _on(self, message: Message, destination: Destination) -> list[OutgoingEvent] | None:
        if destination.plugin != PLUGIN_NAME:
            return None
        return self.map_message(message, destination).events

    # --- one hook per call type (no parameter defaults: pluggy would not pass them) ---

    @hookimpl(trylast=True)
    def cdp_on_track(
        self, message: Message, destination: Destination
    ) -> list[OutgoingEvent] | None:
        """Map a track call through the destination's rules."""
        return self._on(message, destination)

    @hookimpl(trylast=True)
    def cdp_on_identify(
        self, message: Message, destination: Destination
    ) -> list[OutgoingEvent] | None:
        """Remember the user's hashed keys; no event unless a rule maps identify calls."""
        return self._on(message, destination)

    @hookimpl(trylast=True)
    def cdp_on_page(self, message: Message, destination: Destination) -> list[OutgoingEvent] | None:
        """Map a page call (the default rules send the page-view event on web)."""
        return self._on(message, destination)

    @hookimpl(trylast=True)
    def cdp_on_screen(
        self, message: Message, destination: Destination
    ) -> list[OutgoingEvent] | None:
        """Map a screen call (no default rule)."""
        return self._on(message, destination)

    @hookimpl(trylast=True)
    def cdp_on_group(
        self, message: Message, destination: Destination
    ) -> list[OutgoingEvent] | None:
        """Map a group call (no default rule)."""
        return self._on(message, destination)

    @hookimpl(trylast=True)
    def cdp_on_alias(
        self, message: Message, destination: Destination
    ) -> list[OutgoingEvent] | None:
        """Link the two ids in the identity store; no event unless a rule says so."""
        return self._on(message, destination)
