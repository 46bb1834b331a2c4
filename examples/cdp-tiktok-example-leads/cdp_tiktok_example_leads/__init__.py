"""An example third-party plugin for cdp_tiktok.

It shows the two things plugins most often do:

* register a filter for the mapping language (``{{ properties.amount_micros | micros }}``);
* provide a destination written in Python instead of mapping files: every
  ``Form Submitted`` track call becomes a TikTok ``Lead`` event for a CRM event set.

Installed with pip, it is found through the ``cdp_tiktok`` entry-point group.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from cdp_tiktok import hookimpl
from cdp_tiktok.destination import Destination
from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.matchkeys import MatchKeyNormalizer
from cdp_tiktok.messages import event_time

DESTINATION = "Example Leads"
_normalizer = MatchKeyNormalizer()


def micros(value: Any) -> float | None:
    """Turn an amount in micro-units (``12500000`` or ``"12500000"``) into units (``12.5``).

    Ad and billing systems often store money as integer micros; ``None`` for anything
    that is not an integer, so the mapping drops the field instead of sending garbage.
    """
    if isinstance(value, bool):
        return None
    try:
        return int(value) / 1_000_000
    except (TypeError, ValueError):
        return None


@hookimpl
def cdp_register_filters(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Make ``| micros`` available in every mapping file."""
    register("micros", micros)


@hookimpl
def cdp_register_destinations(register: Callable[[Destination], None]) -> None:
    """Register the lead destination; its event set id comes from the environment."""
    register(
        Destination(
            name=DESTINATION,
            plugin="example_leads",
            settings={
                "event_set_id": os.environ.get("EXAMPLE_LEADS_EVENT_SET", "7000000000000000000")
            },
        )
    )


@hookimpl
def cdp_on_track(message: dict[str, Any], destination: Destination) -> list[OutgoingEvent] | None:
    """Turn ``Form Submitted`` into a CRM ``Lead`` event; ignore everything else."""
    if destination.plugin != "example_leads":
        return None
    if message.get("event") != "Form Submitted":
        return []
    properties = message.get("properties") or {}
    keys = _normalizer.normalize_user(
        {"email": properties.get("email"), "external_id": message.get("userId")}
    )
    data: dict[str, Any] = {
        "event": "Lead",
        "event_time": event_time(message),
        "event_id": message["messageId"],
        "user": keys.user,
        "lead": {
            "lead_id": str(properties.get("lead_id", message["messageId"])),
            "lead_event_source": "example-crm",
        },
    }
    key = BatchKey(DESTINATION, "crm", destination.settings["event_set_id"])
    return [OutgoingEvent(key=key, data=data, rule="example_leads:form-submitted")]
