"""Settings of the TikTok destination and its delivery, with their embedded defaults.

Sources, lowest precedence first: the defaults below, a settings file (YAML or JSON),
environment variables ``CDP_TIKTOK_<FIELD>`` (upper case), CLI flags. See
:func:`load_settings`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators

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

    def __post_init__(self) -> None:
        # Every way of building settings (load_settings, the constructor, replace) checks
        # each value against SETTINGS_SCHEMA; load_settings checks first, naming sources.
        check_values(_schema_view(self), lambda name: f"TikTokSettings({name}=...)")

    def validate(self, *, need_credentials: bool = True) -> TikTokSettings:
        """Check that the settings can send: raise :class:`SettingsError` naming the missing
        credential. Each value was already checked when the settings were built."""
        if need_credentials and not self.event_source_id:
            raise SettingsError(
                "pixel_code (event_source_id) is required: pass --pixel-code, set "
                "CDP_TIKTOK_PIXEL_CODE (Python: TikTokSettings(event_source_id=...)), or use "
                "--sandbox"
            )
        if need_credentials and not self.access_token:
            raise SettingsError(
                "access_token is required: pass --access-token, set CDP_TIKTOK_ACCESS_TOKEN "
                "(Python: TikTokSettings(access_token=Secret(...))), or use --sandbox"
            )
        if self.lease_seconds <= self.timeout_seconds:
            raise SettingsError("lease_seconds: must be longer than timeout_seconds")
        return self


_ALIASES = {"pixel_code": "event_source_id"}
_FIELDS = {f.name: f for f in dataclasses.fields(TikTokSettings)}
FILE_ONLY = frozenset({"destinations"})
"""Fields set only by the settings file (no environment variable, no flag)."""
SECTIONS_READ_ELSEWHERE = frozenset({"write_keys", "intake"})
"""Settings-file sections of ``serve``'s intake, read by :mod:`cdp_tiktok.ingest.config`."""

_TYPES: Final[Mapping[str, dict[str, Any]]] = {
    "str": {"type": "string"},
    "str | None": {"type": ["string", "null"]},
    "int": {"type": "integer"},
    "int | None": {"type": ["integer", "null"]},
    "float": {"type": "number", "finite": True},
    "float | None": {"type": ["number", "null"], "finite": True},
    "bool": {"type": "boolean"},
    "bool | None": {"type": ["boolean", "null"]},
}
"""JSON Schema of a field's (coerced) value by its annotation; other types are unchecked."""

_CONSTRAINTS: Final[Mapping[str, dict[str, Any]]] = {
    "event_source": {"enum": list(EVENT_SOURCES)},
    "default_phone_region": {"phoneRegion": True},
    "endpoint": {"pattern": "^https?://[^\\s/]+"},
    "identity_ttl_days": {"exclusiveMinimum": 0},
    "max_event_age_days": {"exclusiveMinimum": 0},
    "batch_max_events": {"minimum": 1, "maximum": 1000},
    "batch_max_bytes": {"minimum": 10_000},
    "max_message_bytes": {"minimum": 1024},
    "dedup_window_hours": {"minimum": 0, "maximum": 168},
    "concurrency": {"minimum": 1},
    "timeout_seconds": {"exclusiveMinimum": 0},
    "max_attempts": {"minimum": 1},
    "lease_seconds": {"exclusiveMinimum": 0},
}
"""Ranges and choices beyond the type (TikTok's limits: at most 1,000 events a request)."""

SETTINGS_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "cdp_tiktok settings",
    "type": "object",
    "properties": {
        name: {**_TYPES.get(str(f.type), {}), **_CONSTRAINTS.get(name, {})}
        for name, f in _FIELDS.items()
    },
}
"""The schema every setting's value is checked against when settings are read; ``finite``
(no NaN or infinity) and ``phoneRegion`` (a region phonenumbers knows) are our keywords."""


def _finite(validator: Any, wanted: bool, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if wanted and isinstance(instance, float) and not math.isfinite(instance):
        yield ValidationError(f"must be a finite number, got {instance!r}")


def _phone_region(
    validator: Any, wanted: bool, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if wanted and isinstance(instance, str):
        import phonenumbers

        if instance.upper() not in phonenumbers.SUPPORTED_REGIONS:
            yield ValidationError(
                f"{instance!r} is not a phone region (an ISO 3166 code such as US, FR or DE)"
            )


_VALIDATOR: Final = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"finite": _finite, "phoneRegion": _phone_region}
)(SETTINGS_SCHEMA)


def _schema_view(settings: TikTokSettings) -> dict[str, Any]:
    """The settings' values as JSON Schema sees them (secrets and paths left out)."""
    return {
        name: getattr(settings, name)
        for name in _FIELDS
        if name in SETTINGS_SCHEMA["properties"] and SETTINGS_SCHEMA["properties"][name]
    }


def check_values(values: Mapping[str, Any], source_of: Callable[[str], str]) -> None:
    """Raise :class:`SettingsError` for the first value that breaks :data:`SETTINGS_SCHEMA`,
    naming the setting and ``source_of(name)`` (a file:line, variable or flag)."""
    error = next(iter(sorted(_VALIDATOR.iter_errors(dict(values)), key=str)), None)
    if error is None:
        return
    name = str(error.path[0]) if error.path else "settings"
    template = _MESSAGES.get(str(error.validator))
    message = error.message
    if template is not None:
        wanted = error.validator_value
        if isinstance(wanted, list):
            wanted = ", ".join(str(choice) for choice in wanted)
        message = template.format(wanted=wanted, got=error.instance)
    raise SettingsError(f"{name} (from {source_of(name)}): {message}")


_MESSAGES: Final[Mapping[str, str]] = {
    "enum": "{got!r} is not one of {wanted}",
    "pattern": "{got!r} is not an http(s) URL",
    "minimum": "must be at least {wanted}, got {got!r}",
    "maximum": "must be at most {wanted}, got {got!r}",
    "exclusiveMinimum": "must be greater than {wanted}, got {got!r}",
    "type": "expected a value of type {wanted}, got {got!r}",
}
"""One sentence per JSON Schema keyword, instead of jsonschema's wording."""


_NUMBERS: Final[Mapping[str, tuple[Any, str]]] = {
    "int": (int, "a whole number"),
    "float": (float, "a number"),
}
"""How a number-typed setting is read from text or YAML, and what the error calls it."""


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _FIELDS[name].type
    if value is None:
        return None
    try:
        if name == "access_token":
            return value if isinstance(value, Secret) else Secret(str(value))
        if name == "mappings":
            return Path(value)
        number = _NUMBERS.get(kind.removesuffix(" | None"))
        if number is not None:
            convert, wanted = number
            whole = convert is int
            if isinstance(value, bool) or (
                whole and isinstance(value, float) and not value.is_integer()
            ):
                raise TypeError(f"expected {wanted}, got {value!r}")
            try:
                return convert(value)
            except ValueError:
                raise ValueError(f"expected {wanted}, got {value!r}") from None
        if kind in ("bool", "bool | None"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if isinstance(value, (dict, list)):
            raise ValueError(f"expected a text value, got a {type(value).__name__}")
        return str(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SettingsError(f"{name} (from {source}): {exc}") from None


def _key_lines(text: str) -> dict[str, int]:
    """Line (1-based) of each top-level key of a YAML or JSON mapping; empty if unparsable."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        str(key.value): key.start_mark.line + 1
        for key, _ in node.value
        if isinstance(key, yaml.ScalarNode)
    }


def read_settings_file(file: Path) -> tuple[str, Any]:
    """The text of a settings file and its parsed value (JSON for ``.json``, else YAML).

    Raises :class:`SettingsError` naming the file (and the line of a syntax error) when it
    cannot be read or does not parse.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{file}: cannot read the settings file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{file}: the settings file is not UTF-8 text") from None
    try:
        loaded = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{file}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SettingsError(f"{where}: not valid YAML: {problem}") from None
    return text, loaded


def load_settings(
    *,
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TikTokSettings:
    """Merge defaults, a settings file, ``CDP_TIKTOK_*`` variables and explicit overrides.

    Every value is checked here, when it is read, against :data:`SETTINGS_SCHEMA`: a bad
    value raises :class:`SettingsError` naming the setting and where it came from (the
    file and line, the ``CDP_TIKTOK_*`` variable, or the ``--flag``). Unknown keys in the
    file are errors naming the file, line and key. ``pixel_code`` is accepted as the name
    of ``event_source_id`` everywhere. ``None`` overrides are ignored, so unset CLI flags
    do not mask lower sources.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if file is not None:
        text, loaded = read_settings_file(file)
        loaded = {} if loaded is None else loaded
        if not isinstance(loaded, dict):
            raise SettingsError(f"{file}: settings must be a mapping of names to values")
        lines = _key_lines(text)
        for key, value in loaded.items():
            name = _ALIASES.get(key, key)
            where = f"{file}:{lines[key]}" if key in lines else str(file)
            if key in SECTIONS_READ_ELSEWHERE:
                continue
            if name == "destinations":
                from cdp_tiktok.destinations import parse_destinations

                values[name] = parse_destinations(value, file, text)
                continue
            if name not in _FIELDS:
                raise SettingsError(f"{where}: unknown setting {key!r}")
            values[name] = _coerce(name, value, where)
            sources[name] = where
    environ = os.environ if env is None else env
    for name in _FIELDS.keys() - FILE_ONLY:
        for key in {name, *(k for k, v in _ALIASES.items() if v == name)}:
            var = f"CDP_TIKTOK_{key.upper()}"
            if var in environ and environ[var] != "":
                values[name] = _coerce(name, environ[var], var)
                sources[name] = var
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        name = _ALIASES.get(key, key)
        flag = f"--{key.replace('_', '-')}"
        if name not in _FIELDS or name in FILE_ONLY:
            raise SettingsError(f"unknown setting {key!r}")
        values[name] = _coerce(name, value, flag)
        sources[name] = flag
    checked = {k: v for k, v in values.items() if SETTINGS_SCHEMA["properties"].get(k)}
    check_values(checked, lambda name: sources.get(name, "the defaults"))
    mappings = values.get("mappings")
    if mappings is not None and not mappings.is_dir():
        raise SettingsError(
            f"mappings (from {sources['mappings']}): {str(mappings)!r} is not a directory of "
            "mapping files"
        )
    return TikTokSettings(**values)
