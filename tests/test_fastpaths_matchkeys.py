"""The match-key fast paths equal the general normalizers.

* A plain dotted-quad IPv4 address is returned as written without building an
  ``ipaddress`` object; every other text goes through ``ipaddress``. Both routes must
  agree on every text, valid or not.
* A phone number is read without libphonenumber's parser when its digits can be
  checked against the metadata directly (possibility by length, memoized per country
  code and length), and a national number without a region is ``no_region`` without
  calling the parser: both must give what the parser gives, result and reason.
* The memo of normalized values (two bounded generations) gives what a normalizer
  without memo gives, whatever the sequence of users and however small the memo.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.matchkeys import (
    _PLAIN_IPV4,
    MatchKeyNormalizer,
    MatchKeyPolicy,
    _Invalid,
    _ip,
    _phone,
)


def slow_ip(text: str) -> str | None:
    """The general route: ``ipaddress``, IPv4-mapped IPv6 as IPv4, no scope ids."""
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def fast_ip(text: str) -> str | None:
    try:
        return _ip(text)
    except _Invalid:
        return None


octets = st.one_of(
    st.integers(0, 255).map(str),
    st.integers(0, 999).map(str),
    st.integers(0, 255).map(lambda n: f"{n:03d}"),  # leading zeros are refused
    st.sampled_from(["", "-1", "1 ", "+1", "٣", "0x1"]),
)
dotted = st.lists(octets, min_size=3, max_size=5).map(".".join)
addresses = st.one_of(
    dotted,
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),  # IPv4-mapped IPv6
    st.ip_addresses(v=6).map(str),
    st.text(alphabet="0123456789.:abcdef%", max_size=20),
)


@settings(max_examples=1500)
@given(addresses)
def test_the_ipv4_shortcut_equals_ipaddress(text: str) -> None:
    assert fast_ip(text) == slow_ip(text)


@settings(max_examples=300)
@given(st.ip_addresses(v=4).map(str))
def test_every_canonical_ipv4_takes_the_shortcut(text: str) -> None:
    assert _PLAIN_IPV4.fullmatch(text)
    assert fast_ip(text) == text


def test_normalize_user_sends_the_address_unchanged() -> None:
    normalizer = MatchKeyNormalizer(MatchKeyPolicy())
    assert normalizer.normalize_user({"ip": " 203.0.113.9 "}).user == {"ip": "203.0.113.9"}
    assert normalizer.normalize_user({"ip": "203.0.113.09"}).dropped == {"ip:invalid": 1}


# --- phone numbers ------------------------------------------------------------------


def slow_phone(text: str, region: str | None) -> str:
    """The parser's route for every text: E.164, or the reason it is dropped."""
    text = re.sub(r"^[\s(\[]*00", "+", text, count=1)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        no_code = phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
        if exc.error_type == no_code and region is None and "+" not in text:
            return "no_region"
        return "invalid"
    if phonenumbers.is_possible_number_with_reason(number) != (
        phonenumbers.ValidationResult.IS_POSSIBLE
    ):
        return "invalid"
    result: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return result


def fast_phone(text: str, region: str | None) -> str:
    try:
        return _phone(region)(text)
    except _Invalid as exc:
        return exc.reason


separator = st.sampled_from(["", "", "", " ", "-", ".", "(", ")", "/", "[", "]", "  "])


@st.composite
def written_numbers(draw: st.DrawFn) -> str:
    """Digits as people write them: runs of digits between separators, sometimes after
    "+" or "00", sometimes with a real country code."""
    head = draw(st.sampled_from(["", "", "+", "00", "+1", "+33", "+44 ", "0", "1"]))
    runs = draw(st.lists(st.text(alphabet="0123456789", min_size=1, max_size=5), max_size=5))
    text = head
    for run in runs:
        text += draw(separator) + run
    return text + draw(separator)


phone_regions = st.sampled_from([None, None, "US", "GB", "FR", "DE", "IN", "BR", "AU", "MX"])


@settings(max_examples=1000)
@given(written_numbers(), phone_regions)
def test_phone_shortcuts_equal_the_parser(text: str, region: str | None) -> None:
    assert fast_phone(text, region) == slow_phone(text, region), (text, region)


@settings(max_examples=300)
@given(st.text(alphabet="0123456789 ()-./[]", max_size=24).map(str.strip))
def test_national_numbers_without_region_are_no_region_as_the_parser_says(text: str) -> None:
    assert fast_phone(text, None) == slow_phone(text, None), text


def test_a_text_too_long_for_the_parser_is_invalid_not_no_region() -> None:
    text = "415" + " " * 250 + "5552671"
    assert fast_phone(text, None) == slow_phone(text, None) == "invalid"
    assert fast_phone("415 555 2671", None) == "no_region"


# --- the memo ----------------------------------------------------------------------

POOL: dict[str, list[Any]] = {
    "email": [" A.B@example.com", "a.b@example.com", "nope", "", "C@D.org", None, ["x@y.z"]],
    "phone": [
        "(415) 555-2671",
        "+1 415 555 2671",
        "06 12 34 56 78",
        "+33 6 12 34 56 78",
        "12",
        "",
        4155552671,
        ["+44 20 7946 0958", "(415) 555-2671"],
    ],
    "external_id": ["u1", " u1 ", "u2", 7, True, ""],
    "ip": ["203.0.113.9", "::ffff:203.0.113.9", "bad"],
    "locale": ["en-US", "fr_fr", "x"],
}
MESSAGES = [
    None,
    {"context": {"locale": "fr-FR"}},
    {"context": {"locale": "en-US"}},
    {"traits": {"address": {"country": "GB"}}},
]


@st.composite
def user_streams(draw: st.DrawFn) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Users drawn from small pools, so values repeat and the memo is exercised."""
    stream = []
    for _ in range(draw(st.integers(1, 25))):
        keys = draw(st.lists(st.sampled_from(sorted(POOL)), max_size=4, unique=True))
        raw = {key: draw(st.sampled_from(POOL[key])) for key in keys}
        stream.append((raw, draw(st.sampled_from(MESSAGES))))
    return stream


@settings(max_examples=400)
@given(user_streams(), st.sampled_from([1, 2, 3, 5, 65536]), st.sampled_from([None, "US", "FR"]))
def test_the_memo_gives_what_no_memo_gives(
    stream: list[tuple[dict[str, Any], dict[str, Any] | None]], size: int, region: str | None
) -> None:
    memo = MatchKeyNormalizer(MatchKeyPolicy(default_region=region, cache_size=size))
    plain = MatchKeyNormalizer(MatchKeyPolicy(default_region=region, cache_size=0))
    for raw, message in stream:
        assert memo.normalize_user(raw, message) == plain.normalize_user(raw, message)
        assert memo.cache_info().currsize <= 2 * size
    assert plain.cache_info().currsize == 0


def test_an_unknown_key_is_refused_with_or_without_memo() -> None:
    normalizer = MatchKeyNormalizer()
    normalizer.normalize_user({"email": "a@b.c"})
    for value in ("a@b.c", None, ["a@b.c"]):
        with pytest.raises(ValueError, match="unknown match key 'mail'"):
            normalizer.normalize_user({"mail": value})
