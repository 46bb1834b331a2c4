"""The mapping language's own filters, as plain functions on JSON values.

Every function here takes the value (or :data:`ABSENT` when the field is missing) and
constant arguments, and returns a JSON value or :data:`ABSENT`. They never raise for bad
input: a value that does not fit gives :data:`ABSENT` (the field is then left out). The
compiler calls them directly on plain paths (no template engine) and wraps them for
Jinja templates, so both routes give the same result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from cdp_tiktok.mapping.coerce import CoerceError, to_integer, to_number
from cdp_tiktok.tiktok.catalog import load_catalog, name_key


class _Absent:
    """The value of a missing field: falsy, equal only to itself, never serialized."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


def present(value: Any) -> bool:
    """True unless ``value`` is absent: missing, ``null``, ``""``, ``[]`` or ``{}``.

    ``0`` and ``false`` are present.
    """
    if value is None or value is ABSENT:
        return False
    kind = value.__class__
    if kind is str or kind is list or kind is dict:
        return bool(value)
    return True


def f_default(value: Any, fallback: Any = ABSENT) -> Any:
    """``value`` when present, else ``fallback``."""
    return value if present(value) else fallback


def f_coalesce(value: Any, *alternatives: Any) -> Any:
    """The first present value among ``value`` and ``alternatives`` (``0`` counts)."""
    if present(value):
        return value
    for item in alternatives:
        if present(item):
            return item
    return ABSENT


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def f_lower(value: Any) -> Any:
    """Lower-cased text (numbers become text first)."""
    text = _text(value)
    return ABSENT if text is None else text.lower()


def f_upper(value: Any) -> Any:
    """Upper-cased text (numbers become text first)."""
    text = _text(value)
    return ABSENT if text is None else text.upper()


def f_trim(value: Any) -> Any:
    """Text without surrounding whitespace."""
    text = _text(value)
    return ABSENT if text is None else text.strip()


def f_string(value: Any) -> Any:
    """Text of a text or number (``12.0`` -> ``"12"``); other values are absent."""
    text = _text(value)
    return ABSENT if text is None else text


def f_text(value: Any) -> Any:
    """Like ``string``, but lists and objects become compact JSON with sorted keys
    (for a Segment ``query`` that is an object)."""
    if isinstance(value, dict | list):
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError):
            return ABSENT
    return f_string(value)


def f_number(value: Any) -> Any:
    """A finite number from a number or decimal text (``"12.50"`` -> 12.5)."""
    try:
        return to_number(value)
    except CoerceError:
        return ABSENT


def f_integer(value: Any) -> Any:
    """An integer from an integer, integral float or integral text; else absent."""
    try:
        return to_integer(value)
    except CoerceError:
        return ABSENT


def f_cents(value: Any, places: int = 2) -> Any:
    """Minor units to major units: ``1999 | cents`` -> 19.99 (``places`` decimals)."""
    number = f_number(value)
    if number is ABSENT or not isinstance(places, int) or not 0 <= places <= 4:
        return ABSENT
    return round(number / 10**places, places)


def f_query_param(value: Any, name: Any) -> Any:
    """The first value of query parameter ``name`` in the URL ``value``, if any."""
    if not isinstance(value, str) or not isinstance(name, str) or name not in value:
        return ABSENT
    try:
        query = urlsplit(value).query
    except ValueError:
        return ABSENT
    if not query or name not in query:
        return ABSENT
    found = parse_qs(query, keep_blank_values=False).get(name)
    return found[0] if found else ABSENT


def t_named(value: Any, names: Any) -> bool:
    """The ``named`` test: ``event is named "Order Completed"`` (or a list of names) is
    true when the text ``value`` equals one of ``names`` ignoring case, spaces, ``_``
    and ``-`` (:func:`~cdp_tiktok.tiktok.catalog.name_key`)."""
    if not isinstance(value, str):
        return False
    wanted = (names,) if isinstance(names, str) else names
    if not isinstance(wanted, list | tuple):
        return False
    key = name_key(value)
    return any(isinstance(n, str) and name_key(n) == key for n in wanted)


def standard_event_filter(event_source: str) -> Callable[[Any], Any]:
    """The ``standard_event`` filter for ``event_source``: the TikTok standard (or
    legacy) event name a text spells in any case or separators (``"view_content"`` ->
    ``"ViewContent"``), else absent. Reserved names and page views are absent."""
    catalog = load_catalog()

    def f_standard_event(value: Any) -> Any:
        if not isinstance(value, str):
            return ABSENT
        found = catalog.standard_spelling(value, event_source)
        return ABSENT if found is None else found

    return f_standard_event


#: Filters defined by the mapping language (name -> plain function).
PLAIN_FILTERS: Final[dict[str, Callable[..., Any]]] = {
    "default": f_default,
    "d": f_default,
    "coalesce": f_coalesce,
    "lower": f_lower,
    "upper": f_upper,
    "trim": f_trim,
    "string": f_string,
    "text": f_text,
    "number": f_number,
    "float": f_number,
    "integer": f_integer,
    "int": f_integer,
    "cents": f_cents,
    "query_param": f_query_param,
}

#: Filters that receive an absent value (the others give absent for absent input).
ABSENT_AWARE: Final = frozenset({"default", "d", "coalesce"})

#: Jinja built-in filters kept (pure, deterministic, data-only).
JINJA_FILTERS: Final = frozenset(
    {
        "abs", "capitalize", "count", "first", "join", "last", "length", "list", "map",
        "max", "min", "replace", "reject", "rejectattr", "round", "select", "selectattr",
        "sort", "sum", "title", "truncate", "unique", "urlencode", "wordcount",
    }
)  # fmt: skip
