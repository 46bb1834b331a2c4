"""Several TikTok destinations from one settings file: the ``destinations:`` list.

Each entry names a destination (the key ``integrations`` uses to address it) and gives
its own event source id, the *name* of the environment variable holding its access
token (a token never sits in the file), mapping directory, event source and test event
code; whatever an entry leaves out comes from the top-level settings. ``TikTok`` and
``TikTok Conversions`` in ``integrations`` address all of them at once. Without a list,
there is one destination, ``TikTok``, with the top-level settings.

The list is read once, at start: changing the file needs a restart.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdp_tiktok.yamlpos import line_of, located

if TYPE_CHECKING:
    from cdp_tiktok.settings import Secret, TikTokSettings

SINGLE_DESTINATION = "TikTok"
SHARED_KEYS = ("TikTok", "TikTok Conversions")
"""``integrations`` keys that address every TikTok destination."""
RESERVED_NAMES = frozenset({*SHARED_KEYS, "All"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}\Z")


@dataclass(frozen=True)
class DestinationSpec:
    """One entry of the ``destinations:`` list; ``origin`` is ``FILE:LINE`` of the entry."""

    name: str
    origin: str
    event_source_id: str | None = None
    access_token_env: str | None = None
    mappings: Path | None = None
    event_source: str | None = None
    test_event_code: str | None = None


_KEYS = {
    "name": "name",
    "pixel_code": "event_source_id",
    "event_source_id": "event_source_id",
    "access_token_env": "access_token_env",
    "mappings": "mappings",
    "event_source": "event_source",
    "test_event_code": "test_event_code",
}


def parse_destinations(value: Any, file: Path, text: str) -> tuple[DestinationSpec, ...]:
    """The entries of a settings file's ``destinations:`` value, checked.

    Raises :class:`~cdp_tiktok.settings.SettingsError` as ``FILE:LINE: destinations[i].key:
    reason`` for a missing or unknown key, a duplicate or reserved name, an access token
    written in the file, or a value of the wrong kind. ``mappings`` is relative to the
    settings file's directory.
    """
    from cdp_tiktok.settings import EVENT_SOURCES, SettingsError

    def fail(path: list[str | int], reason: str) -> SettingsError:
        return SettingsError(located(file, text, ["destinations", *path], reason))

    if not isinstance(value, list) or not value:
        raise fail([], "must be a non-empty list of destinations")
    specs: list[DestinationSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise fail([index], "must be a mapping (name, pixel_code, access_token_env, ...)")
        fields: dict[str, Any] = {}
        for key, item in entry.items():
            if key == "access_token":
                raise fail(
                    [index, key],
                    "an access token never goes in the file; name the environment "
                    "variable holding it in access_token_env",
                )
            if key not in _KEYS:
                raise fail([index, key], f"unknown key; known: {', '.join(sorted(_KEYS))}")
            if not isinstance(item, str) or not item.strip():
                raise fail([index, key], "must be a non-empty string")
            fields[_KEYS[key]] = item.strip()
        name = fields.get("name")
        if name is None:
            raise fail([index], "name is required")
        if not _NAME.match(name) or name in RESERVED_NAMES:
            raise fail(
                [index, "name"],
                "must be 1-64 letters, digits, spaces or _.:- and not TikTok, "
                "TikTok Conversions or All",
            )
        if name in seen:
            raise fail([index, "name"], f"{name!r} is given twice")
        seen.add(name)
        env_name = fields.get("access_token_env")
        if env_name is not None and not _ENV_NAME.match(env_name):
            raise fail([index, "access_token_env"], "must be an environment variable name")
        source = fields.get("event_source")
        if source is not None and source not in EVENT_SOURCES:
            raise fail([index, "event_source"], f"must be one of {', '.join(EVENT_SOURCES)}")
        if "mappings" in fields:
            directory = (file.parent / fields["mappings"]).resolve()
            if not directory.is_dir():
                raise fail([index, "mappings"], f"{directory} is not a directory")
            fields["mappings"] = directory
        line = line_of(text, ["destinations", index])
        origin = f"{file}:{line}" if line is not None else str(file)
        specs.append(DestinationSpec(origin=origin, **fields))
    return tuple(specs)


def destination_settings(
    settings: TikTokSettings,
    *,
    environ: Mapping[str, str] | None = None,
    access_token: Secret | None = None,
) -> dict[str, TikTokSettings]:
    """The settings of every TikTok destination, by destination name.

    Without a ``destinations:`` list: ``{"TikTok": settings}``. With one: each entry's
    values over the top-level settings, its token read from ``access_token_env`` (left
    as the top-level token when the variable is unset: :func:`check_destinations` says
    so). ``access_token`` replaces every token (the sandbox). This is the one function
    that builds per-destination delivery settings; ``send``, ``serve`` and any worker
    call it.
    """
    from cdp_tiktok.settings import Secret

    if not settings.destinations:
        if access_token is not None:
            settings = dataclasses.replace(settings, access_token=access_token)
        return {SINGLE_DESTINATION: settings}
    env = os.environ if environ is None else environ
    found: dict[str, TikTokSettings] = {}
    for spec in settings.destinations:
        token = access_token
        if token is None:
            value = env.get(spec.access_token_env or "", "")
            token = Secret(value) if value else settings.access_token
        found[spec.name] = dataclasses.replace(
            settings,
            event_source_id=spec.event_source_id or settings.event_source_id,
            access_token=token,
            mappings=spec.mappings or settings.mappings,
            event_source=spec.event_source or settings.event_source,
            test_event_code=spec.test_event_code or settings.test_event_code,
            destinations=(),
        )
    return found


def check_destinations(
    settings: TikTokSettings,
    *,
    need_credentials: bool = True,
    environ: Mapping[str, str] | None = None,
) -> dict[str, TikTokSettings]:
    """:func:`destination_settings`, each validated; raise
    :class:`~cdp_tiktok.settings.SettingsError` naming the entry (``FILE:LINE``) whose
    settings are incomplete, e.g. whose access token variable is not set."""
    from cdp_tiktok.settings import SettingsError

    env = os.environ if environ is None else environ
    built = destination_settings(settings, environ=env)
    if not settings.destinations:
        settings.validate(need_credentials=need_credentials)
        return built
    for spec in settings.destinations:
        where = f"{spec.origin}: destinations entry {spec.name!r}"
        if need_credentials and spec.access_token_env and not env.get(spec.access_token_env):
            raise SettingsError(
                f"{where}: environment variable {spec.access_token_env} (access_token_env) "
                "is not set"
            )
        try:
            built[spec.name].validate(need_credentials=need_credentials)
        except SettingsError as exc:
            raise SettingsError(f"{where}: {exc}") from None
    return built
