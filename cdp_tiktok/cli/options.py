"""Settings options shared by the commands that talk to TikTok (``send``, ``map``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cdp_tiktok.settings import (
    EVENT_SOURCES,
    SANDBOX_ACCESS_TOKEN,
    SANDBOX_PIXEL_CODE,
    Secret,
    TikTokSettings,
    load_settings,
)

F = TypeVar("F", bound=Callable[..., Any])

SANDBOX_OUTBOX = "sqlite:///cdp_tiktok_sandbox_outbox.db"
SANDBOX_IDENTITY = "sqlite:///cdp_tiktok_sandbox_identity.db"
"""Where ``--sandbox`` keeps its state (in the working directory), apart from production's."""


def where(url: str) -> str:
    """A store url as a user finds it: the absolute file of a ``sqlite:///`` url."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and len(url) > len(prefix):
        return str(Path(url[len(prefix) :]).resolve())
    return url


SETTINGS_FILE_OPTION = click.option(
    "--settings",
    "settings_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="CDP_TIKTOK_SETTINGS",
    help="Settings file (YAML or JSON). Env: CDP_TIKTOK_SETTINGS.",
)
ACCESS_TOKEN_OPTION = click.option(
    "--access-token",
    help="TikTok Events API access token. Env: CDP_TIKTOK_ACCESS_TOKEN. Never printed.",
)

SETTING_OPTIONS: list[Callable[[F], F]] = [
    SETTINGS_FILE_OPTION,
    ACCESS_TOKEN_OPTION,
    click.option(
        "--pixel-code", help="Event source id (pixel code for web). Env: CDP_TIKTOK_PIXEL_CODE."
    ),
    click.option(
        "--event-source",
        type=click.Choice(EVENT_SOURCES),
        help="web, app, offline or crm. Env: CDP_TIKTOK_EVENT_SOURCE.",
    ),
    click.option(
        "--test-event-code",
        help="Mark every event as a test event (Events Manager → Test Events).",
    ),
    click.option(
        "--mappings",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Mapping directory; it replaces the packaged default mappings (default: those). "
        "Env: CDP_TIKTOK_MAPPINGS.",
    ),
    click.option(
        "--default-phone-region",
        help="Region for phone numbers without a country code, e.g. US. "
        "Env: CDP_TIKTOK_DEFAULT_PHONE_REGION.",
    ),
    click.option(
        "--max-message-bytes",
        type=click.IntRange(min=1024),
        help="Refuse a line, array element or JSON value longer than this (default 1 MiB). "
        "Env: CDP_TIKTOK_MAX_MESSAGE_BYTES.",
    ),
]


def setting_options(function: F) -> F:
    """Decorate a command with the shared settings options."""
    for option in reversed(SETTING_OPTIONS):
        function = option(function)
    return function


def settings_from_options(options: dict[str, Any], **extra: Any) -> TikTokSettings:
    """Build settings from the shared options plus command-specific ``extra`` overrides.

    Raises :class:`~cdp_tiktok.settings.SettingsError` naming the setting and its source
    when one is invalid (the CLI prints it as one line, exit status 2).
    """
    overrides = {
        "access_token": options.get("access_token"),
        "pixel_code": options.get("pixel_code"),
        "event_source": options.get("event_source"),
        "test_event_code": options.get("test_event_code"),
        "mappings": options.get("mappings"),
        "default_phone_region": options.get("default_phone_region"),
        "max_message_bytes": options.get("max_message_bytes"),
        **extra,
    }
    return load_settings(file=options.get("settings_file"), overrides=overrides)


def sandbox_settings(
    settings: TikTokSettings, *, outbox: str | None, identity: str | None
) -> TikTokSettings:
    """``settings`` for ``--sandbox``: the sandbox token, the sandbox pixel code unless one
    was given, and stores kept apart from production ones unless ``outbox``/``identity``
    were given explicitly. The endpoint is set once the sandbox listens."""
    return dataclasses.replace(
        settings,
        access_token=Secret(SANDBOX_ACCESS_TOKEN),
        event_source_id=settings.event_source_id or SANDBOX_PIXEL_CODE,
        outbox=outbox or SANDBOX_OUTBOX,
        identity=identity or SANDBOX_IDENTITY,
        # every destination of a destinations: list sends with the sandbox token too
        destinations=tuple(
            dataclasses.replace(spec, access_token_env=None) for spec in settings.destinations
        ),
    )
