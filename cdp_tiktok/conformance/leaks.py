"""Find raw identifiers of an input message anywhere in an output.

The identifiers are the values of e-mail, phone and id fields anywhere in the message
(``traits.email``, ``context.traits.phone``, ``properties.email``, ``userId``,
``anonymousId``, ``previousId``, …). A leak is one of them, or an obvious normal form of
it (trimmed and lower-cased e-mail; E.164 or digits-only phone), inside any text of the
output other than a 64-hex hash. Values too short to be told apart from coincidence
(ids under 6 characters, phones under 7 digits, e-mails without ``@``) are not looked
for, nor is a value the input also carries in a field that is not an identifier (the
output may then legitimately hold it). Reports never show a raw value in full.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import phonenumbers

from cdp_tiktok.conformance.diff import escape
from cdp_tiktok.matchkeys import is_sha256_hex

#: Field names (lower-case, ``_`` removed) whose values are identifiers, and their kind.
IDENTIFIER_FIELDS: Final[Mapping[str, str]] = {
    "email": "email",
    "emails": "email",
    "emailaddress": "email",
    "phone": "phone",
    "phones": "phone",
    "phonenumber": "phone",
    "mobile": "phone",
    "userid": "external id",
    "anonymousid": "external id",
    "previousid": "external id",
    "externalid": "external id",
}
_DIGITS = re.compile(r"\D+")
MIN_ID_LENGTH = 6
MIN_PHONE_DIGITS = 7


@dataclass(frozen=True, slots=True)
class Leak:
    """A raw identifier from ``source`` (a pointer into the input) found at ``found``
    (a pointer into the output); ``masked`` shows its first and last characters only."""

    kind: str
    source: str
    found: str
    masked: str

    def __str__(self) -> str:
        return f"raw {self.kind} from input {self.source} ({self.masked}) appears at {self.found}"


def mask(text: str) -> str:
    """``ja…om (17 chars)``: enough to recognise test data, never the whole value."""
    if len(text) <= 4:
        return f"{'*' * len(text)} ({len(text)} chars)"
    return f"{text[:2]}…{text[-2:]} ({len(text)} chars)"


def _walk(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, str(index)))
    else:
        yield path, value


def _pointer(path: tuple[str, ...]) -> str:
    return "/" + "/".join(escape(p) for p in path)


def _kind(path: tuple[str, ...]) -> str | None:
    for segment in reversed(path):
        if segment.isdigit():
            continue
        return IDENTIFIER_FIELDS.get(segment.lower().replace("_", ""))
    return None


def _forms(kind: str, value: Any, region: str | None) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return []
    text = str(value).strip()
    if not text or is_sha256_hex(text):
        return []
    if kind == "email":
        return [text.lower()] if "@" in text and len(text) >= 5 else []
    if kind == "phone":
        digits = _DIGITS.sub("", text)
        if len(digits) < MIN_PHONE_DIGITS:
            return []
        forms = {text.lower(), digits}
        try:
            number = phonenumbers.parse(text, region)
            forms.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
            forms.add(str(number.national_number))
        except phonenumbers.NumberParseException:
            pass
        return sorted(f for f in forms if len(_DIGITS.sub("", f)) >= MIN_PHONE_DIGITS)
    return [text.lower()] if len(text) >= MIN_ID_LENGTH else []


def identifiers(
    message: Mapping[str, Any], region: str | None = None
) -> list[tuple[str, str, str]]:
    """``(kind, input pointer, form)`` for every identifier worth looking for."""
    found: list[tuple[str, str, str]] = []
    elsewhere: set[str] = set()
    for path, value in _walk(message, ()):
        kind = _kind(path)
        if kind is None:
            if isinstance(value, str | int) and not isinstance(value, bool):
                elsewhere.add(str(value).strip().lower())
            continue
        for form in _forms(kind, value, region):
            found.append((kind, _pointer(path), form))
    return [(k, p, f) for k, p, f in found if not any(f in other for other in elsewhere)]


def find_leaks(
    message: Mapping[str, Any], output: Any, *, region: str | None = None, prefix: str = ""
) -> list[Leak]:
    """Every raw identifier of ``message`` found in ``output`` (pointers under ``prefix``)."""
    wanted = identifiers(message, region)
    if not wanted:
        return []
    leaks: list[Leak] = []
    for path, value in _walk(output, ()):
        if not isinstance(value, str) or is_sha256_hex(value):
            continue
        text = value.lower()
        for kind, source, form in wanted:
            if form in text:
                leaks.append(Leak(kind, source, prefix + _pointer(path), mask(form)))
                break
    return leaks
