"""Which destinations a delivery run sends to, and with which settings (one place)."""

from __future__ import annotations

from cdp_tiktok.settings import TikTokSettings

BUILTIN_DELIVERABLE = ("TikTok",)
"""Destinations delivered with the run's own settings (the built-in TikTok destination)."""


def delivery_settings(settings: TikTokSettings) -> dict[str, TikTokSettings]:
    """Per destination name (``BatchKey.destination``), the settings its events are sent
    with. Every command that delivers (``send``, ``worker``, ``outbox drain``) builds its
    routes here, so a settings file listing several destinations plugs in at one place.
    Events of a destination not in the result stay in the outbox (reported as stopped).
    """
    from cdp_tiktok.destinations import destination_settings

    # Without a ``destinations:`` list: the built-in TikTok destination, these settings.
    return destination_settings(settings)
