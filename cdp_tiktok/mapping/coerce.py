"""Typing by target field: TikTok's type for every field a mapping can write.

:data:`FIELD_TYPES` is the table (target path -> type name); :data:`COERCERS` turns a
type name into a function that returns the typed value or raises :class:`CoerceError`
whose reason never contains the value itself (it may be personal data). The engine
drops a field whose value cannot be coerced, with a warning, and keeps the event.

:data:`FIELD_SOURCES` says which ``event_source`` values a field applies to (TikTok
reference §2.5); the compiler leaves out fields that do not apply to the configured
source, at load time.

Caps: strings longer than :data:`MAX_STRING` characters are dropped (a truncated id is a
wrong id); lists longer than :data:`MAX_ITEMS` are truncated; values nested deeper than
:data:`MAX_DEPTH` are dropped.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from typing import Any, Final

from cdp_tiktok.messages import iso_utc_seconds, parse_timestamp

MAX_STRING: Final = 4096
#: Longest ``event_id`` sent as is; a longer id is sent as its SHA-256 hex (TikTok
#: documents no limit; ids a site passes to the Pixel are far shorter).
MAX_EVENT_ID: Final = 128
MAX_ITEMS: Final = 1000
MAX_DEPTH: Final = 8
#: Items nested ``for`` loops of one output spec may make per message (product of their
#: ``limit``s), checked when the file is loaded.
MAX_LOOP_ITEMS: Final = 10_000

_INT_TEXT = re.compile(r"[+-]?\d+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class CoerceError(ValueError):
    """A value cannot take the target field's type; ``reason`` names types, not values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"),  # before int: a bool is an int in Python
    ((int, float), "number"),
    (str, "text"),
    ((list, tuple), "list"),
    (dict, "object"),
)


def value_kind(value: Any) -> str:
    """The mapping language's word for a value's type, for messages (never the value)."""
    if value is None:
        return "null"
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return "value"


def to_string(value: Any) -> str:
    """Text for a string field: text as is, integers and integral floats without ``.0``.

    Booleans, lists, objects and non-finite numbers are refused.
    """
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise CoerceError(f"text longer than {MAX_STRING} characters")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CoerceError(f"a {value_kind(value)} is not text")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise CoerceError("a non-finite number is not text")
    return str(int(value)) if value.is_integer() else repr(value)


def to_event_id(value: Any) -> str:
    """A deduplication id: text as :func:`to_string` makes it, except that text longer
    than :data:`MAX_EVENT_ID` characters (of any length) becomes the SHA-256 hex of its
    UTF-8 bytes, so the same long id always gives the same ``event_id``."""
    if isinstance(value, str) and len(value) > MAX_EVENT_ID:
        return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return to_string(value)


def to_number(value: Any) -> int | float:
    """A finite JSON number from a number or a plain decimal text (``"12.50"`` -> 12.5).

    Booleans, thousands separators, currency symbols, NaN and infinities are refused.
    """
    if isinstance(value, bool):
        raise CoerceError("a boolean is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CoerceError("a non-finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INT_TEXT.fullmatch(text):
            return int(text)
        if _NUMBER_TEXT.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return number
        raise CoerceError("text that is not a plain decimal number")
    raise CoerceError(f"a {value_kind(value)} is not a number")


def to_integer(value: Any) -> int:
    """An integer from an integer, an integral float or integral text (``"3"``, ``2.0``)."""
    number = to_number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise CoerceError("a fractional number is not an integer")
        return int(number)
    return number


def to_currency(value: Any) -> str:
    """An upper-case three-letter ISO 4217 code (``" usd "`` -> ``"USD"``)."""
    if not isinstance(value, str):
        raise CoerceError(f"a {value_kind(value)} is not a currency code")
    text = value.strip()
    if not _CURRENCY.fullmatch(text):
        raise CoerceError("text that is not a three-letter currency code")
    return text.upper()


def to_boolean(value: Any) -> bool:
    """A boolean from a boolean, 0/1, or ``"true"``/``"false"``/``"yes"``/``"no"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise CoerceError(f"a {value_kind(value)} is not a boolean")


def to_unix_seconds(value: Any) -> int:
    """Integer Unix seconds (UTC) from an ISO-8601 text or epoch seconds/milliseconds.

    Times before 1970 and texts that are no time are refused.
    """
    if value.__class__ is str:
        # The form validated messages carry: no datetime is built (see iso_utc_seconds).
        seconds = iso_utc_seconds(value)
        if seconds is not None:
            return seconds
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CoerceError(f"a {value_kind(value)} is not a time")
    try:
        seconds_float = parse_timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise CoerceError("not an ISO-8601 time or an epoch number") from None
    if not math.isfinite(seconds_float) or seconds_float < 0:
        raise CoerceError("a time before 1970 or not finite")
    return math.floor(seconds_float)


CONTENT_TYPES: Final = ("product", "product_group")


def to_content_type(value: Any) -> str:
    """TikTok's ``content_type``: ``product`` or ``product_group`` (any case, spaces or
    ``-`` for ``_``); anything else is refused (TikTok would fail the whole batch)."""
    if value in CONTENT_TYPES:
        return str(value)
    if not isinstance(value, str):
        raise CoerceError(f"a {value_kind(value)} is not a content type")
    text = value.strip().lower().replace("-", "_").replace(" ", "_")
    if text not in CONTENT_TYPES:
        raise CoerceError("content_type must be product or product_group")
    return text


def to_string_list(value: Any) -> list[str]:
    """A list of strings (a single value becomes a one-item list); bad items dropped."""
    items = value if isinstance(value, list | tuple) else [value]
    out: list[str] = []
    for item in items[:MAX_ITEMS]:
        try:
            out.append(to_string(item))
        except CoerceError:
            continue
    if not out:
        raise CoerceError("no item is text")
    return out


def json_value(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of an untyped value, within the caps.

    Lists are truncated to :data:`MAX_ITEMS`; too-deep or non-JSON values, too-long
    strings and non-finite numbers raise :class:`CoerceError`.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise CoerceError(f"text longer than {MAX_STRING} characters")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CoerceError("a non-finite number")
        return value
    if depth >= MAX_DEPTH:
        raise CoerceError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list | tuple):
        return [json_value(item, depth + 1) for item in value[:MAX_ITEMS]]
    if isinstance(value, dict):
        return {str(k): json_value(v, depth + 1) for k, v in value.items()}
    raise CoerceError(f"a {value_kind(value)} is not a JSON value")


COERCERS: Final[dict[str, Callable[[Any], Any]]] = {
    "string": to_string,
    "event_id": to_event_id,
    "number": to_number,
    "integer": to_integer,
    "currency": to_currency,
    "boolean": to_boolean,
    "timestamp": to_unix_seconds,
    "string_list": to_string_list,
    "content_type": to_content_type,
    "any": json_value,
}

_STRINGS = (
    "properties.order_id",
    "properties.shop_id",
    "properties.search_string",
    "properties.query",
    "properties.description",
    "properties.contents[].content_id",
    "properties.contents[].content_name",
    "properties.contents[].content_category",
    "properties.contents[].brand",
    "page.url",
    "page.referrer",
    "app.app_id",
    "app.app_name",
    "app.app_version",
    "ad.callback",
    "ad.campaign_id",
    "ad.ad_id",
    "ad.creative_id",
    "ad.attribution_type",
    "ad.attribution_provider",
    "lead.lead_id",
    "lead.lead_event_source",
)

#: Target path -> type name (a key of :data:`COERCERS`). ``[]`` marks list items.
#: Paths not listed (custom properties) are typed ``any``: JSON kept, caps applied.
FIELD_TYPES: Final[dict[str, str]] = {
    **dict.fromkeys(_STRINGS, "string"),
    "event_id": "event_id",
    "event_time": "timestamp",
    "limited_data_use": "boolean",
    "properties.value": "number",
    "properties.currency": "currency",
    "properties.num_items": "integer",
    "properties.content_ids": "string_list",
    "properties.contents[].price": "number",
    "properties.contents[].quantity": "integer",
    "ad.is_retargeting": "boolean",
    "ad.attributed": "boolean",
    "properties.content_type": "content_type",
    "properties.contents[].content_type": "content_type",
}

#: Keys a ``contents[]`` item may carry (TikTok reference §2.4).
CONTENT_KEYS: Final = frozenset(
    {"content_id", "content_name", "content_category", "price", "quantity", "brand", "content_type"}
)

_ALL = frozenset({"web", "app", "offline", "crm"})
#: Target path -> the event sources it applies to (reference §2.5); others apply to all.
FIELD_SOURCES: Final[dict[str, frozenset[str]]] = {
    "page": frozenset({"web"}),
    "app": frozenset({"app"}),
    "ad": frozenset({"app"}),
    "lead": frozenset({"crm"}),
    "limited_data_use": frozenset({"web", "app"}),
    "user.external_id": _ALL - {"offline"},
    "user.ttclid": frozenset({"web"}),
    "user.ttp": frozenset({"web"}),
    "user.ip": frozenset({"web", "app"}),
    "user.user_agent": frozenset({"web", "app"}),
    "user.locale": frozenset({"web", "app"}),
    "user.idfa": frozenset({"app"}),
    "user.idfv": frozenset({"app"}),
    "user.gaid": frozenset({"app"}),
    "user.att_status": frozenset({"app"}),
}


#: Fields TikTok requires per event source (reference §2.2): (object, key). ``page.url``
#: on web is not among them: Segment and RudderStack send server-side web events without
#: ``page``; the ``require_page_url`` setting adds it (:func:`required_fields`).
REQUIRED_BY_SOURCE: Final[dict[str, tuple[str, str]]] = {
    "app": ("app", "app_id"),
    "crm": ("lead", "lead_id"),
}
PAGE_URL: Final = ("page", "url")


def required_fields(
    event_source: str, *, require_page_url: bool = False
) -> tuple[tuple[str, str], ...]:
    """The ``(object, key)`` fields an event of ``event_source`` cannot be sent without."""
    required = REQUIRED_BY_SOURCE.get(event_source)
    fields = () if required is None else (required,)
    if require_page_url and event_source == "web":
        fields = (*fields, PAGE_URL)
    return fields


def coercer_for(path: str) -> Callable[[Any], Any]:
    """The coercion function for a target path (``any`` when the table does not list it)."""
    return COERCERS[FIELD_TYPES.get(path, "any")]


def applies(path: str, event_source: str) -> bool:
    """Whether the target field at ``path`` is sent for ``event_source``."""
    sources = FIELD_SOURCES.get(path)
    return sources is None or event_source in sources
