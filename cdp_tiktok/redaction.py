"""Redact personal identifiers from messages and events before they are shown.

Used by plugin tracing and by conformance reports: a value under an identifier or
personal field (e-mail, phone, user and anonymous ids, people's names, address) becomes
``"<redacted sha256:1a2b3c4d>"`` (the first 8 hex characters of the SHA-256 of its text,
so two mentions of one value can still be matched up by eye). Hashed match keys
(64 hex characters) are shown as they are: they are what TikTok receives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from cdp_tiktok.matchkeys import is_sha256_hex, sha256_hex

#: Field names (lower-case, ``_`` removed) whose values never appear in clear.
PERSONAL_FIELDS: Final = frozenset(
    {
        "email", "emails", "emailaddress", "phone", "phones", "phonenumber", "mobile",
        "userid", "anonymousid", "previousid", "externalid", "firstname", "lastname",
        "username", "address", "street", "zipcode", "postalcode", "birthday",
    }
)  # fmt: skip


def _personal(key: Any) -> bool:
    return isinstance(key, str) and key.lower().replace("_", "") in PERSONAL_FIELDS


def redact_value(value: Any) -> Any:
    """The shown form of a personal value (hashes and blanks are kept)."""
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if value is None or value == "" or (isinstance(value, str) and is_sha256_hex(value)):
        return value
    if isinstance(value, bool):
        return value
    return f"<redacted sha256:{sha256_hex(str(value))[:8]}>"


def redact(value: Any, *, traits: bool = False) -> Any:
    """A copy of ``value`` (JSON-like) with every personal field redacted, recursively
    (inside ``traits`` objects, ``name`` is a person's name and is redacted too)."""
    if isinstance(value, Mapping):
        return {
            k: redact_value(v)
            if _personal(k) or (traits and k == "name")
            else redact(v, traits=traits or k == "traits")
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, traits=traits) for v in value]
    return value
