"""Segment message intake: schema validation, normalization and timestamps.

``validate_message`` is the single gate every Segment message passes before routing.
It checks the message against ``schemas/segment-message.schema.json`` (Draft 2020-12)
and returns a normalized copy:

* ``type`` set (from ``default_type`` when the message has none, e.g. ``POST /v1/track``);
* ``userId``, ``anonymousId``, ``previousId``, ``groupId`` given as numbers become strings
  (``42`` -> ``"42"``, ``42.0`` -> ``"42"``), as Segment's clients do;
* known optional top-level fields that are ``null`` are removed (``null`` means absent);
* ``messageId`` always present: when missing, a UUID-5 of the message's canonical JSON
  (transport fields ``sentAt``, ``receivedAt``, ``writeKey`` excluded), so a re-sent
  message keeps its id;
* ``timestamp`` always present, as UTC ISO-8601 with milliseconds and a ``Z`` suffix
  (``2024-05-01T12:30:00.250Z``).

The copy is shallow: nested objects (``properties``, ``context`` ...) are shared with the
input, which is never modified.

Error messages never echo a field's value (it may be an e-mail or a phone number), only
its JSON type.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # imported when first needed: most runs never ask the schema
    from jsonschema import Draft202012Validator, ValidationError

__all__ = [
    "MESSAGE_SCHEMA",
    "MESSAGE_TYPES",
    "FieldError",
    "MessageError",
    "event_time",
    "expand_batch",
    "format_timestamp",
    "is_batch",
    "iso_utc_seconds",
    "parse_timestamp",
    "validate_message",
]

MESSAGE_TYPES: Final[tuple[str, ...]] = ("track", "identify", "page", "screen", "group", "alias")

MESSAGE_SCHEMA: Final[dict[str, Any]] = json.loads(
    resources.files("cdp_tiktok")
    .joinpath("schemas", "segment-message.schema.json")
    .read_text(encoding="utf-8")
)


@cache
def _message_validator() -> Draft202012Validator:
    """The JSON Schema validator of one message (jsonschema is imported on first use)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(MESSAGE_SCHEMA)


@cache
def _batch_validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(
        {
            "$schema": MESSAGE_SCHEMA["$schema"],
            "$defs": MESSAGE_SCHEMA["$defs"],
            "$ref": "#/$defs/batch",
        }
    )


# Fixed namespace for derived message ids: changing it would change every derived id.
MESSAGE_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:cdp-tiktok:message-id")

_TIME_FIELDS: Final = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
_ID_FIELDS: Final = ("userId", "anonymousId", "previousId", "groupId")
# Known optional top-level fields for which null means "absent".
_NULLABLE: Final = frozenset(
    (
        *_TIME_FIELDS,
        "userId",
        "anonymousId",
        "messageId",
        "context",
        "integrations",
        "properties",
        "traits",
        "channel",
        "version",
        "writeKey",
        "name",
        "category",
    )
)
# Transport metadata: differs between two sends of the same message.
_NOT_IDENTITY: Final = frozenset(("sentAt", "receivedAt", "writeKey"))
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_STRING: Final = re.compile(r"-?\d+(?:\.\d+)?")
_MS_THRESHOLD: Final = 1e11
_BAD_TIME: Final = "not an ISO-8601 timestamp or epoch number"


@dataclass(frozen=True, slots=True, order=True)
class FieldError:
    """One problem in a message: where (a JSON pointer, ``""`` for the whole message) and why."""

    pointer: str
    reason: str

    def __str__(self) -> str:
        return f"{self.pointer}: {self.reason}" if self.pointer else self.reason


class MessageError(ValueError):
    """A rejected message: every problem found, plus where the message came from.

    ``str(error)`` is ``"{source}:{line}: {pointer}: {reason}; {pointer}: {reason}"`` with
    absent parts omitted. Reasons never contain field values.
    """

    def __init__(
        self, errors: Iterable[FieldError], *, line: int | None = None, source: str | None = None
    ) -> None:
        self.errors: list[FieldError] = list(errors)
        self.line = line
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        location = ":".join(str(part) for part in (self.source, self.line) if part is not None)
        body = "; ".join(str(error) for error in self.errors)
        return f"{location}: {body}" if location else body

    def prefixed(self, prefix: str) -> MessageError:
        """The same error with every pointer placed under ``prefix`` (e.g. ``/batch/3``)."""
        return MessageError(
            [FieldError(prefix + e.pointer, e.reason) for e in self.errors],
            line=self.line,
            source=self.source,
        )


# --------------------------------------------------------------------------- timestamps


def _from_epoch(number: int | float) -> datetime:
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{_BAD_TIME} (not finite)")
    try:
        if abs(number) > _MS_THRESHOLD:
            if isinstance(number, int):
                return _EPOCH + timedelta(milliseconds=number)
            return _EPOCH + timedelta(seconds=number / 1000)
        return _EPOCH + timedelta(seconds=number)
    except OverflowError:
        raise ValueError(f"{_BAD_TIME} (out of range)") from None


def _to_datetime(value: object) -> datetime:
    """An aware UTC datetime for an ISO-8601 string or an epoch number/string."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{_BAD_TIME} (got {_json_type(value)})")
    if not isinstance(value, str):
        return _from_epoch(value)
    text = value.strip()
    if _EPOCH_STRING.fullmatch(text):
        return _from_epoch(float(text) if "." in text else int(text))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(_BAD_TIME) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{_BAD_TIME} (out of range)") from None


@lru_cache(maxsize=256)
def _text_datetime(text: str) -> datetime:
    """:func:`_to_datetime` of a string, remembered: the ``receivedAt`` the intake stamps,
    and a batch's ``sentAt``, are the same text for every message of a request."""
    return _to_datetime(text)


def parse_timestamp(value: str | int | float) -> float:
    """Unix seconds (UTC) of an ISO-8601 string or an epoch number.

    Accepts any ISO-8601 form :meth:`datetime.fromisoformat` reads: offsets ``Z``,
    ``+00:00``, ``+0530``; fractional seconds of any length (kept to microseconds);
    date-only ``YYYY-MM-DD`` (midnight). A naive time (no offset) is taken as UTC.
    Numbers, and strings of digits, are epoch seconds, or epoch milliseconds when their
    absolute value is above 10^11. Raises :class:`ValueError` for anything else.
    """
    return _to_datetime(value).timestamp()


def format_timestamp(moment: datetime) -> str:
    """``moment`` as UTC ISO-8601 with milliseconds and ``Z``: ``2024-05-01T12:30:00.250Z``.

    A naive ``moment`` is taken as UTC.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def event_time(message: Mapping[str, Any]) -> int:
    """Whole Unix seconds of a validated message's ``timestamp`` (rounded down)."""
    value = message["timestamp"]
    # With at most millisecond digits the fast path equals the float route exactly.
    if value.__class__ is str and len(value) <= 24:
        seconds = iso_utc_seconds(value)
        if seconds is not None:
            return seconds
    return math.floor(parse_timestamp(value))


# "YYYY-MM-DDTHH:MM" -> Unix seconds of that minute (UTC). A stream's timestamps share
# few minutes, so most texts cost one slice and two dictionary reads; bounded.
_MINUTE_SECONDS: dict[str, int] = {}
_MINUTE_CACHE_SIZE: Final = 4096
_MINUTE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})")
_SECOND_TAIL: Final = re.compile(r":[0-5][0-9](?:\.[0-9]{1,9})?Z")
_SECONDS: Final = {f"{n:02d}": n for n in range(60)}
_MILLIS: Final = frozenset(f"{n:03d}" for n in range(1000))
_ORDINAL_1970: Final = 719_163  # date(1970, 1, 1).toordinal()


def _minute_seconds(text: str) -> int | None:
    """Unix seconds of the minute ``text[:16]`` names, or ``None`` (not the form, not a
    real date and time, or before 1970)."""
    found = _MINUTE.fullmatch(text, 0, 16)
    if found is None:
        return None
    year, month, day, hour, minute = (int(part) for part in found.groups())
    if hour > 23 or minute > 59:
        return None
    try:
        days = date(year, month, day).toordinal() - _ORDINAL_1970
    except ValueError:
        return None
    if days < 0:
        return None
    seconds = days * 86_400 + hour * 3600 + minute * 60
    if len(_MINUTE_SECONDS) >= _MINUTE_CACHE_SIZE:
        _MINUTE_SECONDS.clear()
    _MINUTE_SECONDS[text[:16]] = seconds
    return seconds


# The text iso_utc_seconds answered last, and its answer: validation reads a message's
# timestamp, then mapping reads the very same string object again (one tuple, replaced
# whole, so a reader in another thread sees a matching pair).
_last_answer: tuple[str, int | None] = ("", None)


def iso_utc_seconds(text: str) -> int | None:
    """Whole Unix seconds (fraction dropped) of ``YYYY-MM-DDTHH:MM:SS[.f]Z`` with ASCII
    digits, 1 to 9 fraction digits and a real date and time from 1970 on; ``None`` for
    any other text (callers then use :func:`parse_timestamp`).

    Equal to ``datetime.fromisoformat(text[:19])`` taken as UTC, without building a
    datetime (``tests/test_fastpaths_timestamps.py`` checks it). Asked again about the
    same string object, it answers from memory.
    """
    global _last_answer
    last = _last_answer
    if last[0] is text:
        return last[1]
    seconds = _iso_utc_seconds(text)
    _last_answer = (text, seconds)
    return seconds


def _iso_utc_seconds(text: str) -> int | None:
    base = _MINUTE_SECONDS.get(text[:16])
    if base is None:
        base = _minute_seconds(text)
        if base is None:
            return None
    second = _SECONDS.get(text[17:19])
    if second is None:
        return None
    if len(text) == 24 and text[23] == "Z" and text[19] == "." and text[20:23] in _MILLIS:
        if text[16] == ":":
            return base + second
        return None
    return base + second if _SECOND_TAIL.fullmatch(text, 16) else None


# --------------------------------------------------------------------------- fast path
# A Python mirror of the schema, used only to skip jsonschema for messages it accepts.
# It must never accept what the schema rejects (tests compare both verdicts); when it
# cannot prove a message valid, the schema decides and words the errors. It visits each
# key once and accepts only the exact classes JSON decoding yields (``bool`` is not a
# number here, as in JSON Schema); anything else (a subclass, a tuple) goes to the schema.

_NONE: Final[type] = type(None)
_STR: Final[frozenset[type]] = frozenset((str, _NONE))
_OBJ: Final[frozenset[type]] = frozenset((dict, _NONE))
_BOOL: Final[frozenset[type]] = frozenset((bool, _NONE))
_STR_NUM: Final[frozenset[type]] = frozenset((str, int, float, _NONE))

# Scan verdicts: not proven valid (ask the schema); valid and already normal; valid, but
# a ``null`` or a non-string id was seen, so the normalization loops must run.
_UNPROVEN: Final = 0
_CLEAN: Final = 1
_NORMALIZE: Final = 2

_NUMBER_CLASSES: Final[frozenset[type]] = frozenset((int, float))
_OPTION_CLASSES: Final[frozenset[type]] = frozenset((bool, dict))
_PAGE_KEYS: Final = frozenset(("path", "referrer", "search", "title", "url"))
_ID_KEYS: Final = frozenset(_ID_FIELDS)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _present(value: object) -> bool:
    """A non-empty string or a number, by exact class (the schema's ``presentId``)."""
    return (value.__class__ is str and value != "") or value.__class__ in _NUMBER_CLASSES


def _page_valid(page: dict[str, Any]) -> bool:
    for item in page.values():
        if item.__class__ is not str:
            break
    else:
        return True  # the usual page: nothing but strings
    return all(page.get(key).__class__ in _STR for key in _PAGE_KEYS)


def _context_valid(context: dict[str, Any]) -> bool:
    for key, item in context.items():
        classes = _CONTEXT_CLASSES.get(key)
        if classes is not None and item.__class__ not in classes:
            return False
    page = context.get("page")
    return page is None or _page_valid(page)


def _integrations_valid(integrations: dict[str, Any]) -> bool:
    return all(option.__class__ in _OPTION_CLASSES for option in integrations.values())


# The classes each known key's value may have; the insides of ``context`` and
# ``integrations``, non-empty strings and required keys are checked after the loop.
_COMMON_CLASSES: Final[dict[str, frozenset[type]]] = {
    **dict.fromkeys(("userId", "anonymousId", "version", *_TIME_FIELDS), _STR_NUM),
    **dict.fromkeys(("messageId", "channel", "writeKey"), _STR),
    **dict.fromkeys(("context", "integrations", "properties", "traits"), _OBJ),
}
_PRESENT_ID: Final[frozenset[type]] = frozenset((str, int, float))
# Per message type: the classes of its keys, and the keys that must hold a non-empty
# string (or, for ids, a number).
_TYPE_RULES: Final[dict[str, tuple[dict[str, frozenset[type]], tuple[str, ...]]]] = {
    "track": ({**_COMMON_CLASSES, "event": frozenset((str,))}, ("event",)),
    "identify": (_COMMON_CLASSES, ()),
    "page": ({**_COMMON_CLASSES, "name": _STR, "category": _STR}, ()),
    "screen": ({**_COMMON_CLASSES, "name": _STR, "category": _STR}, ()),
    "group": ({**_COMMON_CLASSES, "groupId": _PRESENT_ID}, ("groupId",)),
    "alias": (
        {**_COMMON_CLASSES, "previousId": _PRESENT_ID, "userId": _PRESENT_ID},
        ("previousId", "userId"),
    ),
}
_CONTEXT_CLASSES: Final[dict[str, frozenset[type]]] = {
    **dict.fromkeys(("ip", "userAgent", "locale", "timezone"), _STR),
    "groupId": _STR_NUM,
    "active": _BOOL,
    **dict.fromkeys(
        (
            "page",
            "userAgentData",
            "traits",
            "campaign",
            "referrer",
            "device",
            "os",
            "app",
            "library",
            "location",
            "network",
            "screen",
        ),
        _OBJ,
    ),
}


# The batch envelope's keys and the classes the schema accepts for each; ``batch`` is
# required and must be a list (its items are validated one by one, later).
_ENVELOPE_CLASSES: Final[dict[str, frozenset[type]]] = {
    "batch": frozenset((list,)),
    "sentAt": _STR_NUM,
    "writeKey": _STR,
    "context": _OBJ,
    "integrations": _OBJ,
}


def _envelope_valid(envelope: Mapping[str, Any]) -> bool:
    """True only when the batch schema accepts ``envelope`` (never a false acceptance);
    anything but a plain dict is left to the schema."""
    if envelope.__class__ is not dict or "batch" not in envelope:
        return False
    get = envelope.get
    for key, classes in _ENVELOPE_CLASSES.items():
        if get(key).__class__ not in classes and key in envelope:
            return False
    context = get("context")
    if context and not _context_valid(context):
        return False
    integrations = get("integrations")
    return not integrations or _integrations_valid(integrations)


def _scan(message: dict[str, Any]) -> int:
    """``_UNPROVEN``, or ``_CLEAN``/``_NORMALIZE`` only when the schema would accept
    ``message`` (never a false acceptance); ``_NORMALIZE`` when a value is ``null`` or an
    id (``userId``, ``anonymousId``, ``previousId``, ``groupId``) is not a string."""
    kind = message.get("type")
    found = _TYPE_RULES.get(kind) if kind.__class__ is str else None
    if found is None:
        return _UNPROVEN
    classes_of, required = found
    classes_for = classes_of.get
    verdict = _CLEAN
    for key, value in message.items():
        classes = classes_for(key)
        if classes is not None and value.__class__ not in classes:
            return _UNPROVEN
        if value is None or (value.__class__ is not str and key in _ID_KEYS):
            verdict = _NORMALIZE
    get = message.get
    for key in required:
        if get(key, "") == "":  # missing or empty (the loop checked the class)
            return _UNPROVEN
    if get("messageId") == "":
        return _UNPROVEN
    if not (_present(get("userId")) or _present(get("anonymousId"))):
        return _UNPROVEN
    context = get("context")
    if context and not _context_valid(context):
        return _UNPROVEN
    integrations = get("integrations")
    if integrations and not _integrations_valid(integrations):
        return _UNPROVEN
    return verdict


# --------------------------------------------------------------------------- errors


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _pointer(parts: Iterable[object]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


_ARTICLED: Final = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
}


def _default_reason(error: ValidationError) -> str:
    expected: Any = error.validator_value
    if error.validator == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_ARTICLED.get(name, name) for name in names if name != "null")
        return f"must be {wanted}, got {_json_type(error.instance)}"
    if error.validator == "minLength":
        return "must not be empty"
    if error.validator == "enum":
        return "must be one of " + ", ".join(str(v) for v in expected)
    return f"is invalid ({error.validator})"


def _translate(error: ValidationError) -> list[FieldError]:
    """Friendly, value-free field errors for one jsonschema error."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    reasons: dict[str, str] = schema.get("x-reasons", {})
    pointer = _pointer(error.absolute_path)
    validator = str(error.validator)
    if validator == "required" and isinstance(error.instance, dict):
        reason = reasons.get("required", "is required")
        wanted: Any = error.validator_value
        missing = [key for key in wanted if key not in error.instance]
        return [FieldError(f"{pointer}{_pointer([key])}", reason) for key in missing]
    pointer = schema.get("x-pointers", {}).get(validator, pointer)
    return [FieldError(pointer, reasons.get(validator) or _default_reason(error))]


def _schema_errors(validator: Draft202012Validator, instance: object) -> list[FieldError]:
    found: set[FieldError] = set()
    for error in validator.iter_errors(instance):
        found.update(_translate(error))
    return sorted(found)


def _time_errors(
    message: Mapping[str, Any], times: dict[str, datetime], fields: tuple[str, ...] = _TIME_FIELDS
) -> list[FieldError]:
    """Parse the timestamp ``fields`` into ``times``; errors for the unparsable ones."""
    errors = []
    for field in fields:
        value = message.get(field)
        if value is None or not (isinstance(value, str) or _is_number(value)):
            continue  # absent, or a type error the schema reports
        try:
            times[field] = _text_datetime(value) if value.__class__ is str else _to_datetime(value)
        except ValueError:
            errors.append(FieldError(f"/{field}", _BAD_TIME))
    return errors


# --------------------------------------------------------------------------- normalization


def _id_string(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _derived_message_id(message: Mapping[str, Any]) -> str:
    identity = {k: v for k, v in message.items() if k not in _NOT_IDENTITY}
    try:
        canonical = json.dumps(
            identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        )
    except (TypeError, ValueError):  # non-JSON keys from the Python API
        canonical = repr(sorted(identity.items(), key=lambda item: str(item[0])))
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, canonical))


def _event_moment(times: Mapping[str, datetime]) -> datetime:
    if "timestamp" in times:
        return times["timestamp"]
    original, sent, received = (
        times.get("originalTimestamp"),
        times.get("sentAt"),
        times.get("receivedAt"),
    )
    if original is not None and sent is not None and received is not None:
        try:
            return received - (sent - original)  # device clock skew correction
        except OverflowError:
            return original
    return original or received or datetime.now(UTC)


def validate_message(
    obj: Any,
    *,
    line: int | None = None,
    source: str | None = None,
    default_type: str | None = None,
) -> dict[str, Any]:
    """Validate one Segment message and return a normalized shallow copy.

    Guarantees on the result: ``type`` is one of :data:`MESSAGE_TYPES`; ``messageId`` is a
    non-empty string; ``timestamp`` is ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC), taken from
    ``timestamp``, else ``receivedAt - (sentAt - originalTimestamp)`` when all three
    exist, else ``originalTimestamp``, else ``receivedAt``, else now; ids are strings;
    known optional fields are never ``null``. Validating the result again returns an
    equal dict. ``obj`` is not modified.

    Raises :class:`MessageError` listing every problem (deterministic order).
    """
    if obj.__class__ is not dict and not isinstance(obj, Mapping):  # dict: no ABC check
        reason = f"a message must be a JSON object, got {_json_type(obj)}"
        raise MessageError([FieldError("", reason)], line=line, source=source)
    message = dict(obj)
    if default_type is not None and message.get("type") is None:
        message["type"] = default_type
    verdict = _scan(message)
    errors = [] if verdict else _schema_errors(_message_validator(), message)
    times: dict[str, datetime] = {}
    stamp = message.get("timestamp")
    # Already in the output form (what Segment's libraries send): kept as is, unparsed.
    canonical = stamp.__class__ is str and len(stamp) == 24 and iso_utc_seconds(stamp) is not None
    errors.extend(_time_errors(message, times, _TIME_FIELDS[1:] if canonical else _TIME_FIELDS))
    if errors:
        raise MessageError(sorted(set(errors)), line=line, source=source)

    if verdict != _CLEAN:  # only what the scan saw (or could not see) needs the loops
        for key in [k for k, v in message.items() if v is None and k in _NULLABLE]:
            del message[key]
        for key in _ID_FIELDS:
            value = message.get(key)
            if value is not None and not isinstance(value, str):
                message[key] = _id_string(value)
    if "messageId" not in message:
        message["messageId"] = _derived_message_id(message)
    if not canonical:
        message["timestamp"] = format_timestamp(_event_moment(times))
    return message


# --------------------------------------------------------------------------- batches


def is_batch(obj: object) -> bool:
    """True when ``obj`` looks like a batch envelope (``{"batch": ...}`` without ``type``)."""
    if obj.__class__ is not dict and not isinstance(obj, Mapping):  # dict: no ABC check
        return False
    return "batch" in obj and "type" not in obj


def _merge(envelope: dict[str, Any] | None, item: object, *, deep: bool) -> object:
    """Envelope values under the item's; the item wins. Non-object items stay as they are."""
    if not envelope:
        return item
    if item is None:
        return dict(envelope)
    if not isinstance(item, dict):
        return item  # validation reports it
    merged = {**envelope, **item}
    if deep:
        for key, value in envelope.items():
            own = item.get(key)
            if isinstance(value, dict) and isinstance(own, dict):
                merged[key] = {**value, **own}
    return merged


def expand_batch(
    envelope: Mapping[str, Any], *, line: int | None = None, source: str | None = None
) -> list[Any]:
    """The items of a Segment batch envelope, with the envelope merged into each.

    Envelope ``context`` and ``integrations`` are merged into every object item (the
    item wins on conflicts; context sub-objects such as ``context.library`` are merged
    one level deeper); envelope ``sentAt`` fills items without one, so skew correction
    works. Items are not validated here (pass each to :func:`validate_message`); the
    envelope itself is, and a bad envelope raises :class:`MessageError`.
    """
    times: dict[str, datetime] = {}
    # The schema words the errors; it is asked only when the mirror cannot prove the
    # envelope valid (jsonschema costs ~100 us per envelope, the mirror ~1 us).
    errors = [] if _envelope_valid(envelope) else _schema_errors(_batch_validator(), envelope)
    errors += _time_errors(envelope, times)
    if errors:
        raise MessageError(sorted(set(errors)), line=line, source=source)
    context = envelope.get("context")
    integrations = envelope.get("integrations")
    sent_at = envelope.get("sentAt")
    items: list[Any] = []
    for item in envelope["batch"]:
        if isinstance(item, dict) and (context or integrations or sent_at is not None):
            item = dict(item)
            if context:
                item["context"] = _merge(context, item.get("context"), deep=True)
            if integrations:
                item["integrations"] = _merge(integrations, item.get("integrations"), deep=False)
            if sent_at is not None and item.get("sentAt") is None:
                item["sentAt"] = sent_at
        items.append(item)
    return items
