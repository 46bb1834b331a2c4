"""The description of one configured destination, as hooks receive it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Destination:
    """One destination the host routes messages to.

    ``name`` is the key a message's ``integrations`` object uses to opt in or out
    (case-sensitive, like Segment); ``aliases`` are further keys honoured the same way.
    ``plugin`` names the plugin that implements it: a hook implementation returns
    ``None`` for destinations whose ``plugin`` is not its own. ``settings`` is owned by
    that plugin (for the built-in TikTok destination, a
    :class:`cdp_tiktok.settings.TikTokSettings`). ``state`` carries per-destination
    resources the host opened for it (for TikTok: the mapping set and identity store).
    """

    name: str
    plugin: str
    settings: Any = None
    aliases: tuple[str, ...] = ()
    state: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def integration_keys(self) -> tuple[str, ...]:
        """Every ``integrations`` key that addresses this destination."""
        return (self.name, *self.aliases)
