"""Settings of the TikTok destination and its delivery, with their embedded defaults.

Sources, lowest precedence first: the defaults below, a settings file (YAML or JSON),
environment variables ``CDP_TIKTOK_<FIELD>`` (upper case), CLI flags. See
:func:`load_settings`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SANDBOX_ACCESS_TOKEN = "sandbox-token"
SANDBOX_PIXEL_CODE = "CSANDBOX0000000000000"
EVENT_SOURCES = ("web", "app", "offline", "crm")


class Secret:
    """A string that never shows itself in ``str``, ``repr``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value; only for the HTTP header that needs it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the setting and its source."""


@dataclass(frozen=True)
class TikTokSettings:
    """Everything the TikTok destination and its delivery need.

    ``event_source_id`` is the pixel code for ``web``, the App ID for ``app``, the
    offline or CRM event set id otherwise. ``mappings`` ``None`` means the packaged
    default mappings. ``page_view_event`` is a setting because TikTok's own material
    spells it both ``Pageview`` and ``PageView`` (reference §3.3). ``default_page_url``
    is the ``page.url`` of web events whose message carries no page URL (server-side
    calls). ``require_page_url`` (off by default, like Segment's and RudderStack's
    integrations) skips web events without ``page.url`` instead of sending them without
    ``page``. ``lead_event_source`` is ``lead.lead_event_source`` of CRM events (the
    CRM's name). ``infer_phone_region`` reads national phone numbers with the region the
    message gives (address country, locale) before ``default_phone_region``.
    """

    event_source: str = "web"
    event_source_id: str = ""
    access_token: Secret = field(default_factory=lambda: Secret(""), repr=False)
    test_event_code: str | None = None
    partner_name: str = "cdp_tiktok"
    endpoint: str = "https://business-api.tiktok.com"
    mappings: Path | None = None
    default_phone_region: str | None = None
    page_view_event: str = "Pageview"
    default_page_url: str | None = None
    require_page_url: bool = False
    lead_event_source: str | None = None
    infer_phone_region: bool = True
    content_type: str = "product"
    app_id: str | None = None
    limited_data_use: bool | None = None
    outbox: str = "sqlite:///cdp_tiktok_outbox.db"
    identity: str = "sqlite:///cdp_tiktok_identity.db"
    identity_ttl_days: float = 90.0
    max_event_age_days: float = 7.0
    batch_max_events: int = 1000
    batch_max_bytes: int = 1_000_000
    concurrency: int = 4
    timeout_seconds: float = 10.0
    max_attempts: int = 12
    max_message_bytes: int = 1_048_576  # one input line/value; Segment's batch limit is 500 KB
    dedup_window_hours: float = 48.0
    lease_seconds: float = 60.0
    """How long a worker holds claimed records; after a crash they wait this long."""
    destinations: tuple[Any, ...] = ()
    """The settings file's ``destinations:`` list (:mod:`cdp_tiktok.destinations`)."""

    def validate(self, *, need_credentials: bool = True) -> TikTokSettings:
        """Check the settings together; raise :class:`SettingsError` naming the field."""
        if self.event_source not in EVENT_SOURCES:
            raise SettingsError(
                f"event_source: {self.event_source!r} is not one of {', '.join(EVENT_SOURCES)}"
            )
        if need_credentials and not self.event_source_id:
            raise SettingsError(
                "pixel_code (event_source_id) is required: pass --pixel-code, set "
                "CDP_TIKTOK_PIXEL_CODE, or use --sandbox"
            )
        if need_credentials and not self.access_token:
            raise SettingsError(
                "access_token is required: pass --access-token, set CDP_TIKTOK_ACCESS_TOKEN, "
                "or use --sandbox"
            )
        if not 1 <= self.batch_max_events <= 1000:
            raise SettingsError("batch_max_events: must be between 1 and 1000 (TikTok's limit)")
        if self.batch_max_bytes < 10_000:
            raise SettingsError("batch_max_bytes: must be at least 10000")
        if self.max_message_bytes < 1024:
            raise SettingsError("max_message_bytes: must be at least 1024")
        if self.concurrency < 1:
            raise SettingsError("concurrency: must be at least 1")
        if not 0 <= self.dedup_window_hours <= 168:
            raise SettingsError("dedup_window_hours: must be between 0 and 168 (7 days)")
        if self.lease_seconds <= self.timeout_seconds:
            raise SettingsError("lease_seconds: must be longer than timeout_seconds")
        return self


_ALIASES = {"pixel_code": "event_source_id"}
_FIELDS = {f.name: f for f in dataclasses.fields(TikTokSettings)}
FILE_ONLY = frozenset({"destinations"})
"""Fields set only by the settings file (no environment variable, no flag)."""
SECTIONS_READ_ELSEWHERE = frozenset({"write_keys", "intake"})
"""Settings-file sections of ``serve``'s intake, read by :mod:`cdp_tiktok.ingest.config`."""


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _FIELDS[name].type
    if value is None:
        return None
    try:
        if name == "access_token":
            return value if isinstance(value, Secret) else Secret(str(value))
        if name == "mappings":
            return Path(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind in ("bool", "bool | None"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        return str(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{name} (from {source}): {exc}") from None


def read_settings_file(file: Path) -> tuple[str, Any]:
    """The text of a settings file and its parsed value (JSON for ``.json``, else YAML).

    Raises :class:`SettingsError` naming the file when it does not parse.
    """
    text = file.read_text(encoding="utf-8")
    try:
        loaded = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"{file}: not valid settings: {exc}") from None
    return text, loaded


def load_settings(
    *,
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TikTokSettings:
    """Merge defaults, a settings file, ``CDP_TIKTOK_*`` variables and explicit overrides.

    Unknown keys in the file are errors naming the file and the key. ``pixel_code`` is
    accepted as the name of ``event_source_id`` everywhere. ``None`` overrides are
    ignored, so unset CLI flags do not mask lower sources.
    """
    values: dict[str, Any] = {}
    if file is not None:
        text, loaded = read_settings_file(file)
        if not isinstance(loaded, dict):
            raise SettingsError(f"{file}: settings must be a mapping of names to values")
        for key, value in loaded.items():
            name = _ALIASES.get(key, key)
            if key in SECTIONS_READ_ELSEWHERE:
                continue
            if name == "destinations":
                from cdp_tiktok.destinations import parse_destinations

                values[name] = parse_destinations(value, file, text)
                continue
            if name not in _FIELDS:
                raise SettingsError(f"{file}: unknown setting {key!r}")
            values[name] = _coerce(name, value, str(file))
    environ = os.environ if env is None else env
    for name in _FIELDS.keys() - FILE_ONLY:
        for key in {name, *(k for k, v in _ALIASES.items() if v == name)}:
            var = f"CDP_TIKTOK_{key.upper()}"
            if var in environ and environ[var] != "":
                values[name] = _coerce(name, environ[var], var)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        name = _ALIASES.get(key, key)
        if name not in _FIELDS or name in FILE_ONLY:
            raise SettingsError(f"unknown setting {key!r}")
        values[name] = _coerce(name, value, f"--{key.replace('_', '-')}")
    return TikTokSettings(**values)
