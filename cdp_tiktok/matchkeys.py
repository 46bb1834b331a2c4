"""Match-key policy 1: how raw identifiers become TikTok's ``user`` object.

One table (:data:`KEY_RULES`) says, for every TikTok user key, whether it is a list,
whether it is hashed, whether a pre-hashed value is accepted, and how it is normalized.
:class:`MatchKeyNormalizer` applies it. Guarantees:

* hashed keys leave as 64 lower-case hex characters; a value that already is 64 hex
  characters is lower-cased and passed through, never hashed twice;
* invalid values are dropped and counted by ``"key:reason"``, never hashed as garbage;
  no raw value appears in the result (nor in an error message);
* absent or blank values are omitted: never ``""`` or ``[]``;
* repeated raw values are served from a bounded in-memory LRU cache;
* a phone number without country code is read with the region the message gives
  (:data:`PHONE_REGION_SOURCES`: address country, then locale), then the configured
  default region; which source served is counted, never guessed further.

The policy is documented for users in ``docs/matching.md``; changing any rule here
means a new :data:`POLICY_VERSION`.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import phonenumbers

POLICY_VERSION: Final = 1

#: Keys whose output is a de-duplicated list of hashes (TikTok's documented arrays).
LIST_KEYS: Final = ("email", "phone", "external_id")

_SHA256_HEX = re.compile(r"[0-9A-Fa-f]{64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"[^\s\x00-\x1f\x7f]+")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
# "00" is the ITU-recommended international call prefix; rewritten to "+" before parsing.
_IDD_00 = re.compile(r"^[\s(\[]*00")
_ATT_STATUSES: Final = frozenset(
    {"AUTHORIZED", "DENIED", "NOT_DETERMINED", "RESTRICTED", "NOT_APPLICABLE"}
)


_sha256 = hashlib.sha256


def sha256_hex(text: str) -> str:
    """Return the SHA-256 of ``text`` (UTF-8) as 64 lower-case hex characters."""
    return _sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(text: str) -> bool:
    """True when ``text`` is exactly 64 hex characters (either case), i.e. already hashed."""
    return len(text) == 64 and _SHA256_HEX.fullmatch(text) is not None


@dataclass(frozen=True)
class MatchKeyPolicy:
    """Tunable parts of policy 1.

    ``default_region``: ISO 3166-1 region (``"FR"``) for phone numbers written without a
    country code when the message gives none; ``None`` drops such numbers as
    ``phone:no_region``. ``infer_region``: read such numbers first with the region of
    the message itself (:data:`PHONE_REGION_SOURCES`); ``False`` uses only
    ``default_region``.
    ``max_values``: at most this many distinct values per list key (email, phone,
    external_id); further values are dropped as ``key:too_many``.
    ``cache_size``: entries of each of the two generations of the in-memory memo of
    normalized values (0 disables it).
    """

    default_region: str | None = None
    max_values: int = 10
    cache_size: int = 65536
    infer_region: bool = True

    def __post_init__(self) -> None:
        if self.max_values < 1:
            raise ValueError("max_values must be at least 1")
        if self.cache_size < 0:
            raise ValueError("cache_size must not be negative")
        region = self.default_region
        if region is not None and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"default_region {region!r} is not a phone region (e.g. 'US', 'FR')")


@dataclass(init=False, slots=True)
class UserKeys:
    """A TikTok ``user`` object plus what was dropped on the way.

    ``user`` holds ``email``/``phone``/``external_id`` as lists of 64-hex strings and the
    other keys as strings; ``dropped`` counts dropped values by ``"key:reason"``;
    ``phone_regions`` counts phone numbers without country code read with a region, by
    the region's source (a :data:`PHONE_REGION_SOURCES` label).
    """

    user: dict[str, Any]
    dropped: dict[str, int]
    phone_regions: dict[str, int]

    def __init__(
        self,
        user: dict[str, Any],
        dropped: dict[str, int] | None = None,
        phone_regions: dict[str, int] | None = None,
    ) -> None:
        # written by hand: the generated __init__ with default factories costs twice as
        # much, and one is made per event
        self.user = user
        self.dropped = {} if dropped is None else dropped
        self.phone_regions = {} if phone_regions is None else phone_regions


class _Invalid(Exception):
    """Raised by a normalizer; ``reason`` becomes the ``key:reason`` counter."""

    def __init__(self, reason: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Reject:
    reason: str


_BLANK: Final = _Reject("blank")  # not counted: a blank value is an absent value
_REJECTS: dict[str, _Reject] = {}


def _reject(reason: str) -> _Reject:
    return _REJECTS.setdefault(reason, _Reject(reason))


_TOO_MANY: Final = _reject("too_many")  # a list key already holds max_values values
_EXTRA: Final = _reject("extra")  # a scalar key already has its (first valid) value


@dataclass(frozen=True, slots=True)
class KeyRule:
    """How one TikTok user key is normalized.

    ``many``: the output is a list. ``hashed``: SHA-256 after ``normalize``.
    ``prehashed``: 64-hex input is passed through lower-cased. ``numbers``: JSON numbers
    are accepted and turned into text first. ``normalize`` gets trimmed, non-blank text
    and returns the normalized text or raises ``_Invalid``.
    """

    many: bool
    hashed: bool
    prehashed: bool
    numbers: bool
    normalize: Callable[[str], str]


# --- normalizers: each receives trimmed, non-empty text --------------------------------


def _email(text: str) -> str:
    text = text.lower()
    if _EMAIL.fullmatch(text) is None:
        raise _Invalid()
    return text


def _external_id(text: str) -> str:
    return text


def _compact_lower(text: str) -> str:
    return _WHITESPACE.sub("", unicodedata.normalize("NFC", text)).lower()


def _spaced_lower(text: str) -> str:
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).lower()


def _country(text: str) -> str:
    if _COUNTRY.fullmatch(text) is None:
        raise _Invalid()
    return text.lower()


def _limited(pattern: re.Pattern[str], max_length: int) -> Callable[[str], str]:
    def check(text: str) -> str:
        if len(text) > max_length or pattern.fullmatch(text) is None:
            raise _Invalid()
        return text

    return check


def _user_agent(text: str) -> str:
    if len(text) > 4096 or _CONTROL.search(text):
        raise _Invalid()
    return text


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Dotted-quad IPv4 without leading zeros: ipaddress would return it unchanged.
_PLAIN_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _ip(text: str) -> str:
    if _PLAIN_IPV4.fullmatch(text):
        return text
    if "%" in text:  # a link-local scope id means nothing outside the host
        raise _Invalid()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise _Invalid() from None
    # A dual-stack server reports IPv4 clients as ::ffff:a.b.c.d; send the IPv4 address.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def _locale(text: str) -> str:
    text = text.replace("_", "-")
    if len(text) > 35 or _LOCALE.fullmatch(text) is None:
        raise _Invalid()
    first, *rest = text.split("-")
    parts = [first.lower()]
    for part in rest:
        if len(part) == 2 and part.isalpha():
            parts.append(part.upper())  # region
        elif len(part) == 4 and part.isalpha():
            parts.append(part.title())  # script
        else:
            parts.append(part.lower())
    return "-".join(parts)


def _uuid(upper: bool) -> Callable[[str], str]:
    def check(text: str) -> str:
        if _UUID.fullmatch(text) is None or text == _ZERO_UUID:
            raise _Invalid()
        return text.upper() if upper else text.lower()

    return check


def _att_status(text: str) -> str:
    text = text.upper().replace("-", "_").replace(" ", "_")
    if text not in _ATT_STATUSES:
        raise _Invalid()
    return text


_PHONE_SEPARATORS = re.compile(r"[\s().\-/\[\]]")
_INTERNATIONAL_DIGITS = re.compile(r"\+[1-9][0-9]{1,16}")
_NATIONAL_DIGITS = re.compile(r"[1-9][0-9]{1,16}")
_IS_POSSIBLE = phonenumbers.ValidationResult.IS_POSSIBLE
_PARSER_MAX_TEXT: Final = 250  # phonenumbers refuses longer input as TOO_LONG


@functools.cache
def _prefix_pattern(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


@functools.cache
def _national_prefix(country_code: int) -> re.Pattern[str] | bool | None:
    """The national-prefix-for-parsing pattern of ``country_code``'s main region
    (``None`` when it has none), or ``False`` when libphonenumber has no metadata."""
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return False
    return _prefix_pattern(metadata.national_prefix_for_parsing)


@functools.cache
def _possible_length(country_code: int, length: int) -> bool:
    """Whether libphonenumber calls a number of ``country_code`` whose national
    significant number has ``length`` digits (no leading zero) possible: it decides on
    the length alone, so one number of each length answers for all."""
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int("1" * length))
    return bool(phonenumbers.is_possible_number_with_reason(number) == _IS_POSSIBLE)


def _possible_e164(country_code: int, significant: str) -> str | None:
    """``+<cc><significant>`` when libphonenumber would parse the digits to exactly this
    number and call it possible; ``None`` when it cannot tell cheaply (the caller then
    runs the full parser).

    The full parser strips a national (trunk) prefix and treats leading zeros specially;
    this shortcut only answers when neither can apply: no leading zero and no match of
    the region's national-prefix-for-parsing pattern. A property test checks it against
    ``phonenumbers.parse``.
    """
    if significant[0] == "0":
        return None
    prefix = _national_prefix(country_code)
    if prefix is False:
        return None
    if prefix is not None and prefix.match(significant):  # type: ignore[union-attr]
        return None
    if not _possible_length(country_code, len(significant)):
        return None
    return f"+{country_code}{significant}"


def _fast_international(compact: str) -> str | None:
    digits = compact[1:]
    for size in (1, 2, 3):  # country codes are prefix-free
        country_code = int(digits[:size])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            significant = digits[size:]
            return _possible_e164(country_code, significant) if significant else None
    return None


def _fast_national(compact: str, region: str) -> str | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.country_code is None:
        return None
    idd = _prefix_pattern(metadata.international_prefix)
    # the full parser handles numbers that begin like an international call or with
    # the region's own country code
    if (idd is not None and idd.match(compact)) or compact.startswith(str(metadata.country_code)):
        return None
    return _possible_e164(metadata.country_code, compact)


def _phone(default_region: str | None) -> Callable[[str], str]:
    region = default_region.upper() if default_region else None
    e164 = phonenumbers.PhoneNumberFormat.E164

    def check(text: str) -> str:
        text = _IDD_00.sub("+", text, count=1)
        compact = _PHONE_SEPARATORS.sub("", text)
        if _INTERNATIONAL_DIGITS.fullmatch(compact):
            fast = _fast_international(compact)
        elif _NATIONAL_DIGITS.fullmatch(compact):
            if region is None and len(compact) >= 3 and len(text) <= _PARSER_MAX_TEXT:
                # the parser finds such a text viable (3+ digits, only punctuation
                # between them) and, without "+" and without a region, no country
                # code (a property test checks it says so)
                raise _Invalid("no_region")
            fast = _fast_national(compact, region) if region is not None else None
        else:
            fast = None
        if fast is not None:
            return fast
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException as exc:
            no_code = phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
            if exc.error_type == no_code and region is None and "+" not in text:
                raise _Invalid("no_region") from None
            raise _Invalid() from None
        # IS_POSSIBLE_LOCAL_ONLY (no area code) cannot become a correct E.164 number.
        if phonenumbers.is_possible_number_with_reason(number) != _IS_POSSIBLE:
            raise _Invalid()
        result: str = phonenumbers.format_number(number, e164)
        return result

    return check


_REGION_ALIASES: Final = {"UK": "GB"}


@functools.lru_cache(maxsize=1024)
def country_region(value: str) -> str | None:
    """The phone region of an address country written as an ISO 3166-1 alpha-2 code
    (``"us"``, ``" FR "``; ``"UK"`` is ``GB``), else ``None`` (names are not guessed)."""
    code = value.strip().upper()
    code = _REGION_ALIASES.get(code, code)
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


@functools.lru_cache(maxsize=1024)
def locale_region(value: str) -> str | None:
    """The region subtag of a BCP 47 locale (``en-US``, ``fr_FR``, ``zh-Hant-TW``) as a
    phone region, else ``None`` (``en`` alone names no region)."""
    for part in value.strip().replace("_", "-").split("-")[1:]:
        if len(part) == 2 and part.isalpha():
            return country_region(part)
    return None


def _read(message: Mapping[str, Any], *keys: str) -> Any:
    value: Any = message
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


#: Where the region of a phone number without country code comes from, first found wins:
#: (label, path in the message, reader). The configured ``default_region`` comes last.
PHONE_REGION_SOURCES: Final[
    tuple[tuple[str, tuple[str, ...], Callable[[str], str | None]], ...]
] = (
    ("traits.address.country", ("traits", "address", "country"), country_region),
    ("context.traits.address.country", ("context", "traits", "address", "country"), country_region),
    ("context.locale", ("context", "locale"), locale_region),
)
DEFAULT_REGION_SOURCE: Final = "default_phone_region"


def phone_region(
    message: Mapping[str, Any] | None, policy: MatchKeyPolicy
) -> tuple[str, str] | None:
    """``(region, source label)`` for national phone numbers of ``message`` under
    ``policy``: the first :data:`PHONE_REGION_SOURCES` entry that names a phone region
    (when ``policy.infer_region``), else the default region, else ``None``."""
    if message is not None and policy.infer_region:
        for label, path, reader in PHONE_REGION_SOURCES:
            value = _read(message, *path)
            if isinstance(value, str):
                region = reader(value)
                if region is not None:
                    return region, label
    if policy.default_region:
        return policy.default_region.upper(), DEFAULT_REGION_SOURCE
    return None


def key_rules(policy: MatchKeyPolicy) -> dict[str, KeyRule]:
    """The rule table of policy 1 for ``policy``. The phone rule reads international
    numbers only; national ones are read by :class:`MatchKeyNormalizer` with the region
    :func:`phone_region` finds (they are ``phone:no_region`` here)."""
    token = _limited(_TOKEN, 2048)
    # columns:          many,  hashed, prehashed, numbers, normalize
    return {
        "email": KeyRule(True, True, True, False, _email),
        "phone": KeyRule(True, True, True, True, _phone(None)),
        "external_id": KeyRule(True, True, True, True, _external_id),
        "ttclid": KeyRule(False, False, False, False, token),
        "ttp": KeyRule(False, False, False, False, token),
        "ip": KeyRule(False, False, False, False, _ip),
        "user_agent": KeyRule(False, False, False, False, _user_agent),
        "locale": KeyRule(False, False, False, False, _locale),
        "idfa": KeyRule(False, False, True, False, _uuid(upper=True)),
        "idfv": KeyRule(False, False, False, False, _uuid(upper=True)),
        "gaid": KeyRule(False, False, True, False, _uuid(upper=False)),
        "att_status": KeyRule(False, False, False, False, _att_status),
        "first_name": KeyRule(False, True, True, False, _compact_lower),
        "last_name": KeyRule(False, True, True, False, _compact_lower),
        "zip_code": KeyRule(False, True, True, True, _compact_lower),
        "city": KeyRule(False, False, False, False, _spaced_lower),
        "state": KeyRule(False, False, False, False, _spaced_lower),
        "country": KeyRule(False, False, False, False, _country),
    }


#: The rule table with the default policy (for documentation and introspection).
KEY_RULES: Final = key_rules(MatchKeyPolicy())
USER_KEYS: Final = tuple(KEY_RULES)


def _number_text(value: float) -> str | None:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


Memo = dict[str, dict[str, "str | _Reject"]]


class MatchKeyNormalizer:
    """Applies policy 1 to raw user keys; thread-safe; reuse one instance.

    Each distinct raw text per key (and, for a phone number without country code, per
    region) is normalized once and then served from a memo held in process memory only:
    two generations of plain dictionaries (one per key) of at most ``cache_size``
    entries each (0 disables the memo). A hit in the older generation moves the entry
    to the newer one; when the newer one is full it becomes the older one and the
    previous older one is dropped. ``cache_info()`` reports it.
    """

    def __init__(self, policy: MatchKeyPolicy = MatchKeyPolicy()) -> None:
        self.policy = policy
        self._rules = key_rules(policy)
        self._many = frozenset(key for key, rule in self._rules.items() if rule.many)
        self._max_values = policy.max_values
        self._generation = policy.cache_size
        self._keep = policy.cache_size > 0
        # newer and older generation: memo name -> raw text -> result; a memo name is a
        # match key, or "phone <region>" for national numbers read with that region
        self._memo: Memo = self._empty()
        self._older: Memo = self._empty()
        self._size = 0  # entries in self._memo
        self._misses = 0
        self._phone_by_region: dict[str, Callable[[str], str]] = {}
        self._default_region = _found(policy, None)

    def _empty(self) -> Memo:
        return {key: {} for key in self._rules}

    def cache_info(self) -> MemoInfo:
        """How many values were normalized (misses), the memo's bound and its size."""
        held = sum(len(d) for d in self._memo.values()) + sum(len(d) for d in self._older.values())
        return MemoInfo(self._misses, self.policy.cache_size, held)

    def _remembered(
        self, name: str, text: str, compute: Callable[[str, str], str | _Reject]
    ) -> str | _Reject:
        """The memo's result for ``text`` in memo ``name``, from the older generation
        or computed by ``compute(name, text)``, stored in the newer generation."""
        older = self._older.get(name)
        found = older.pop(text, None) if older is not None else None
        if found is None:
            self._misses += 1
            found = compute(name, text)
        if not self._keep:
            return found
        if self._size >= self._generation:
            # A reader holding the old dictionaries (another thread) still reads
            # correct values: entries are never changed, only dropped.
            self._older = self._memo
            self._memo = self._empty()
            self._size = 0
        memo = self._memo
        entries = memo.get(name)
        if entries is None:
            entries = memo[name] = {}
        entries[text] = found
        self._size += 1
        return found

    def _text(self, key: str, text: str) -> str | _Reject:
        """The result for one raw text of ``key`` (memoized). One frame for a miss, as
        every distinct value of a stream passes here once."""
        entries = self._memo.get(key)
        if entries is None:
            raise ValueError(f"unknown match key {key!r}; expected one of: {', '.join(USER_KEYS)}")
        found = entries.get(text)
        if found is not None:
            return found
        found = self._older[key].pop(text, None)
        if found is None:
            self._misses += 1
            found = self._normalize_text(key, text)
        if self._keep:
            if self._size >= self._generation:
                self._older = self._memo  # see _remembered
                self._memo = self._empty()
                self._size = 0
            self._memo[key][text] = found
            self._size += 1
        return found

    def _normalize_national(self, name: str, text: str) -> str | _Reject:
        region = name.removeprefix("phone ")
        check = self._phone_by_region.get(region)
        if check is None:  # one parser per region, built once (at most ~250)
            check = self._phone_by_region.setdefault(region, _phone(region))
        try:
            return _sha256(check(text.strip()).encode()).hexdigest()
        except _Invalid as exc:
            return _reject(exc.reason)

    def _national(self, text: str, hint: _RegionHint) -> str | _Reject:
        """A phone number the international reading calls ``no_region``, read with the
        message's region (resolved once per call of :meth:`normalize_user`)."""
        found = hint.found if hint.done else hint.resolve(self.policy)
        if found is None:
            return _NO_REGION
        label, name = found
        entries = self._memo.get(name)
        result = entries.get(text) if entries is not None else None
        if result is None:
            result = self._remembered(name, text, self._normalize_national)
        if result.__class__ is str:
            used = hint.used
            used[label] = used.get(label, 0) + 1
        return result

    def _normalize_text(self, key: str, text: str) -> str | _Reject:
        rule = self._rules[key]
        text = text.strip()
        if not text:
            return _BLANK
        if rule.prehashed and is_sha256_hex(text):
            return text.lower()
        try:
            normalized = rule.normalize(text)
        except _Invalid as exc:
            return _reject(exc.reason)
        return _sha256(normalized.encode()).hexdigest() if rule.hashed else normalized

    def _one(self, key: str, rule: KeyRule, value: Any) -> str | _Reject:
        if isinstance(value, str):
            return self._text(key, value)
        if value is None:
            return _BLANK
        if isinstance(value, bool) or not rule.numbers or not isinstance(value, int | float):
            return _reject("wrong_type")
        text = _number_text(value)
        return _reject("invalid") if text is None else self._text(key, text)

    def normalize_user(
        self, raw: Mapping[str, Any], message: Mapping[str, Any] | None = None
    ) -> UserKeys:
        """Normalize and hash ``raw`` (TikTok user key -> value, list of values, or None).

        Returns TikTok's ``user`` object (list keys de-duplicated in first-seen order and
        capped at ``max_values``; for scalar keys the first valid value wins), the
        dropped-value counters and, for phone numbers without country code, which region
        source read them (``message`` is the Segment message the keys come from; its
        region is looked up only when such a number occurs). Raises ``ValueError``
        naming an unknown key.
        """
        memo = self._memo
        many = self._many
        user: dict[str, Any] = {}
        dropped: dict[str, int] = {}
        hint: _RegionHint | None = None  # made only when a national number occurs
        for key, value in raw.items():
            if value.__class__ is str:  # the common case, kept short: one text value
                try:
                    result = memo[key].get(value)
                except KeyError:  # not a match key: _text raises the error
                    result = None
                if result is None:
                    result = self._text(key, value)
                    memo = self._memo  # a new generation may have begun
                if result.__class__ is str:
                    user[key] = [result] if key in many else result
                    continue
                if result is _NO_REGION:
                    if hint is None:
                        hint = _RegionHint(message, self._default_region)
                    result = self._national(value, hint)
                    memo = self._memo
                    if result.__class__ is str:
                        user[key] = [result]
                        continue
                if result is not _BLANK:
                    _count(dropped, key, result)  # type: ignore[arg-type]
            elif value is not None or key not in self._rules:
                rule = self._rules.get(key)
                if rule is None:
                    raise ValueError(
                        f"unknown match key {key!r}; expected one of: {', '.join(USER_KEYS)}"
                    )
                if hint is None:
                    hint = _RegionHint(message, self._default_region)
                self._several(key, rule, value, user, dropped, hint)
                memo = self._memo
        return UserKeys(user, dropped, hint.used if hint is not None else {})

    def _several(
        self,
        key: str,
        rule: KeyRule,
        value: Any,
        user: dict[str, Any],
        dropped: dict[str, int],
        hint: _RegionHint,
    ) -> None:
        values = value if isinstance(value, list | tuple) else (value,)
        limit = self._max_values if rule.many else 1
        kept: list[str] = []
        for item in values:
            result = self._one(key, rule, item)
            if result is _NO_REGION:
                text = item if isinstance(item, str) else _number_text(item)
                result = self._national(text or "", hint)
            if isinstance(result, str):
                if result in kept:
                    continue
                if len(kept) < limit:
                    kept.append(result)
                    continue
                result = _TOO_MANY if rule.many else _EXTRA
            if result is not _BLANK:
                _count(dropped, key, result)
        if kept:
            user[key] = kept if rule.many else kept[0]


class MemoInfo(NamedTuple):
    """What :meth:`MatchKeyNormalizer.cache_info` reports."""

    misses: int  # values normalized (not served from the memo)
    maxsize: int  # the policy's cache_size
    currsize: int  # entries held now


_NO_REGION: Final = _reject("no_region")


_Found = tuple[str, str]  # the region's source label and memo name ("phone <region>")


def _found(policy: MatchKeyPolicy, message: Mapping[str, Any] | None) -> _Found | None:
    found = phone_region(message, policy)
    return None if found is None else (found[1], "phone " + found[0])


class _RegionHint:
    """The region of one message's national phone numbers, found at most once
    (``default`` is the policy's answer for no message, known in advance)."""

    __slots__ = ("done", "found", "message", "used")

    def __init__(self, message: Mapping[str, Any] | None, default: _Found | None) -> None:
        self.message = message
        self.found = default
        self.done = message is None
        self.used: dict[str, int] = {}

    def resolve(self, policy: MatchKeyPolicy) -> _Found | None:
        if not self.done:
            self.found = _found(policy, self.message)
            self.done = True
        return self.found


def _count(dropped: dict[str, int], key: str, reject: _Reject) -> None:
    name = f"{key}:{reject.reason}"
    dropped[name] = dropped.get(name, 0) + 1


@functools.lru_cache(maxsize=8)
def _normalizer_for(policy: MatchKeyPolicy) -> MatchKeyNormalizer:
    return MatchKeyNormalizer(policy)


def normalize_user(
    raw: Mapping[str, Any],
    policy: MatchKeyPolicy = MatchKeyPolicy(),
) -> UserKeys:
    """Shortcut for ``MatchKeyNormalizer(policy).normalize_user(raw)`` with a shared,
    cached normalizer per policy."""
    return _normalizer_for(policy).normalize_user(raw)
