"""The match-key fast paths equal the general normalizers.

A plain dotted-quad IPv4 address is returned as written without building an
``ipaddress`` object; every other text goes through ``ipaddress``. Both routes must
agree on every text, valid or not.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.matchkeys import _PLAIN_IPV4, MatchKeyNormalizer, MatchKeyPolicy, _Invalid, _ip


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
