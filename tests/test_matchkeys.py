"""Example-based tests of match-key policy 1 (cdp_tiktok.matchkeys)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from cdp_tiktok.matchkeys import (
    KEY_RULES,
    LIST_KEYS,
    POLICY_VERSION,
    USER_KEYS,
    MatchKeyNormalizer,
    MatchKeyPolicy,
    is_sha256_hex,
    normalize_user,
    sha256_hex,
)

# TikTok's published vectors (reference §5.2).
EMAIL_VECTOR = (
    "  ALICE_abc@gmail.com ",
    "848a771458438fc2ec420560d769fb9b9b86851ee338ec56517baabd79d3bb4f",
)
PHONE_VECTOR = (
    "(+1)2133734253",
    "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd",
)
EXTERNAL_VECTOR = ("user_123", "80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b")
PHONE_WITHOUT_PLUS = "1f81adb30e11317806be982cc82769fbf8627833a89dd87cb24d282f71828830"


def user(raw: dict[str, Any], **policy: Any) -> dict[str, Any]:
    return MatchKeyNormalizer(MatchKeyPolicy(**policy)).normalize_user(raw).user


def dropped(raw: dict[str, Any], **policy: Any) -> dict[str, int]:
    return MatchKeyNormalizer(MatchKeyPolicy(**policy)).normalize_user(raw).dropped


def test_policy_version_and_key_table() -> None:
    assert POLICY_VERSION == 1
    assert set(USER_KEYS) == {
        "email", "phone", "external_id", "ttclid", "ttp", "ip", "user_agent", "locale",
        "idfa", "idfv", "gaid", "att_status", "first_name", "last_name", "zip_code",
        "city", "state", "country",
    }  # fmt: skip
    assert {key for key, rule in KEY_RULES.items() if rule.many} == set(LIST_KEYS)
    never_hashed = {"ttclid", "ttp", "ip", "user_agent", "locale", "idfv", "att_status"}
    assert not any(KEY_RULES[key].hashed or KEY_RULES[key].prehashed for key in never_hashed)


# --- TikTok's vectors -------------------------------------------------------------------


def test_tiktok_email_vector() -> None:
    assert user({"email": EMAIL_VECTOR[0]}) == {"email": [EMAIL_VECTOR[1]]}


def test_tiktok_phone_vector() -> None:
    assert user({"phone": PHONE_VECTOR[0]}) == {"phone": [PHONE_VECTOR[1]]}


def test_tiktok_external_id_vector() -> None:
    assert user({"external_id": EXTERNAL_VECTOR[0]}) == {"external_id": [EXTERNAL_VECTOR[1]]}


def test_tiktok_negative_phone_vector() -> None:
    # Hashing without "+" gives TikTok's negative vector: the policy never does that.
    assert hashlib.sha256(b"12133734253").hexdigest() == PHONE_WITHOUT_PLUS
    result = normalize_user({"phone": "12133734253"})
    assert result.user == {}
    assert result.dropped == {"phone:no_region": 1}
    assert user({"phone": "12133734253"}, default_region="US") == {"phone": [PHONE_VECTOR[1]]}
    assert user({"phone": 12133734253}, default_region="US") == {"phone": [PHONE_VECTOR[1]]}


def test_module_helpers() -> None:
    assert sha256_hex("user_123") == EXTERNAL_VECTOR[1]
    assert is_sha256_hex(EXTERNAL_VECTOR[1])
    assert is_sha256_hex(EXTERNAL_VECTOR[1].upper())
    assert not is_sha256_hex(EXTERNAL_VECTOR[1][:-1])
    assert not is_sha256_hex(EXTERNAL_VECTOR[1][:-1] + "g")


# --- pre-hashed values ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["email", "phone", "external_id"])
def test_prehashed_list_values_pass_through_lower_cased(key: str) -> None:
    digest = sha256_hex("x")
    assert user({key: f"  {digest.upper()} "}) == {key: [digest]}


@pytest.mark.parametrize("key", ["first_name", "last_name", "zip_code", "idfa", "gaid"])
def test_prehashed_scalar_values_pass_through_lower_cased(key: str) -> None:
    digest = sha256_hex("x")
    assert user({key: digest.upper()}) == {key: digest}


def test_prehashed_and_raw_duplicates_collapse() -> None:
    assert user({"email": [EMAIL_VECTOR[1].upper(), "alice_abc@gmail.com"]}) == {
        "email": [EMAIL_VECTOR[1]]
    }


# --- email ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["alice", "a@@b.com", "@b.com", "a@", "a b@c.com", "a@b@c", "@"])
def test_invalid_emails_are_dropped_and_counted(bad: str) -> None:
    result = normalize_user({"email": bad})
    assert result.user == {}
    assert result.dropped == {"email:invalid": 1}


def test_email_has_no_provider_specific_rules() -> None:
    raw = "First.Last+promo@GMail.com"
    assert user({"email": raw}) == {"email": [sha256_hex("first.last+promo@gmail.com")]}


# --- phone ------------------------------------------------------------------------------


def test_phone_national_number_uses_default_region() -> None:
    expected = [sha256_hex("+33612345678")]
    assert user({"phone": "06 12 34 56 78"}, default_region="FR") == {"phone": expected}
    assert user({"phone": "0033 6 12 34 56 78"}) == {"phone": expected}
    assert user({"phone": "+33 (0)6-12-34-56-78"}) == {"phone": expected}
    # never "+0612…" (reference §12.6)
    assert dropped({"phone": "0612345678"}) == {"phone:no_region": 1}


def test_china_numbers_stay_e164() -> None:
    assert user({"phone": "138 0000 0000"}, default_region="CN") == {
        "phone": [sha256_hex("+8613800000000")]
    }


@pytest.mark.parametrize(
    "bad", ["123", "+1 213", "+999 123456789", "call me", "+1 213 373 4253 1234"]
)
def test_impossible_phone_numbers_are_dropped(bad: str) -> None:
    result = normalize_user({"phone": bad}, MatchKeyPolicy(default_region="US"))
    assert result.user == {}
    assert result.dropped == {"phone:invalid": 1}


def test_local_only_number_is_not_enough() -> None:
    # 7 digits without an area code is "possible (local only)" in the US: not an E.164 number
    assert dropped({"phone": "373-4253"}, default_region="US") == {"phone:invalid": 1}


def test_bad_default_region_is_rejected() -> None:
    with pytest.raises(ValueError, match="default_region"):
        MatchKeyPolicy(default_region="XX")


# --- external_id and numbers ------------------------------------------------------------


def test_external_id_is_trimmed_and_keeps_case() -> None:
    assert user({"external_id": "  User_123\n"}) == {"external_id": [sha256_hex("User_123")]}


def test_numbers_become_strings_and_booleans_are_invalid() -> None:
    assert user({"external_id": [123, 123.0, "123"]}) == {"external_id": [sha256_hex("123")]}
    assert user({"external_id": 1.5}) == {"external_id": [sha256_hex("1.5")]}
    assert dropped({"external_id": True}) == {"external_id:wrong_type": 1}
    assert dropped({"external_id": float("nan")}) == {"external_id:invalid": 1}
    assert dropped({"email": 5}) == {"email:wrong_type": 1}
    assert dropped({"external_id": {"id": 1}}) == {"external_id:wrong_type": 1}


# --- never-hashed and app keys ----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("ip", " 203.0.113.9 ", "203.0.113.9"),
        ("ip", "2001:DB8:0:0::1", "2001:db8::1"),
        ("ip", "::ffff:203.0.113.9", "203.0.113.9"),
        ("ttclid", " E.C.P.abc123 ", "E.C.P.abc123"),
        ("ttp", "2Dq1bWcmz2aW9Z1bQ5lF0vF3XkM", "2Dq1bWcmz2aW9Z1bQ5lF0vF3XkM"),
        ("user_agent", "Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("locale", "en_us", "en-US"),
        ("locale", "ZH-hant-tw", "zh-Hant-TW"),
        ("idfa", "6d92078a-8246-4ba4-ae5b-76104861e7dc", "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
        ("idfv", "6d92078a-8246-4ba4-ae5b-76104861e7dc", "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
        ("gaid", "38400000-8CF0-11BD-B23E-10B96E40000D", "38400000-8cf0-11bd-b23e-10b96e40000d"),
        ("att_status", "not determined", "NOT_DETERMINED"),
        ("city", "  New   York ", "new york"),
        ("state", "CA", "ca"),
        ("country", " US ", "us"),
        ("first_name", " Mary Ann ", sha256_hex("maryann")),
        ("last_name", "O'Brien", sha256_hex("o'brien")),
        ("zip_code", "SW1A 1AA", sha256_hex("sw1a1aa")),
        ("zip_code", 94105, sha256_hex("94105")),
    ],
)
def test_scalar_keys(key: str, raw: Any, expected: str) -> None:
    assert user({key: raw}) == {key: expected}


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("ip", "999.1.1.1"),
        ("ip", "localhost"),
        ("ip", "fe80::1%eth0"),
        ("ttclid", "has space"),
        ("user_agent", "bad\nagent"),
        ("locale", "english (US)"),
        ("idfa", "00000000-0000-0000-0000-000000000000"),
        ("idfa", "not-a-uuid"),
        ("gaid", "1234"),
        ("att_status", "maybe"),
        ("country", "United States"),
    ],
)
def test_invalid_scalar_values_are_dropped(key: str, raw: str) -> None:
    result = normalize_user({key: raw})
    assert result.user == {}
    assert result.dropped == {f"{key}:invalid": 1}


def test_scalar_key_with_several_values_takes_the_first_valid() -> None:
    result = normalize_user({"ip": ["nope", "203.0.113.9", " 203.0.113.9", "198.51.100.1"]})
    assert result.user == {"ip": "203.0.113.9"}
    assert result.dropped == {"ip:invalid": 1, "ip:extra": 1}


# --- absent values, lists, unknown keys -------------------------------------------------


def test_absent_and_blank_values_are_omitted_silently() -> None:
    result = normalize_user(
        {"email": [], "phone": ["", "  "], "external_id": None, "city": "", "ttp": " "}
    )
    assert result.user == {}
    assert result.dropped == {}


def test_lists_are_deduplicated_in_first_seen_order_and_capped() -> None:
    emails = ["b@x.com", "A@x.com", " B@X.COM ", "c@x.com", "d@x.com"]
    result = normalize_user({"email": emails}, MatchKeyPolicy(max_values=3))
    assert result.user == {"email": [sha256_hex(e) for e in ("b@x.com", "a@x.com", "c@x.com")]}
    assert result.dropped == {"email:too_many": 1}


def test_unknown_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="'phone_number'"):
        normalize_user({"phone_number": "+12133734253"})


def test_dropped_counters_never_hold_raw_values() -> None:
    raw = {"email": "secret-person", "phone": "+1 555 secret", "external_id": True}
    result = normalize_user(raw)
    text = repr(result)
    assert "secret" not in text
    assert result.dropped == {"email:invalid": 1, "phone:invalid": 1, "external_id:wrong_type": 1}


# --- cache ------------------------------------------------------------------------------


def test_repeated_values_are_served_from_the_bounded_cache() -> None:
    normalizer = MatchKeyNormalizer(MatchKeyPolicy(cache_size=1))
    raw = {"email": EMAIL_VECTOR[0], "phone": PHONE_VECTOR[0]}
    first = normalizer.normalize_user(raw)
    second = normalizer.normalize_user(raw)
    assert first == second
    info = normalizer.cache_info()
    assert info.misses == 2  # the second call normalized nothing
    assert info.currsize == 2  # one entry in each generation
    normalizer.normalize_user({"external_id": "other"})
    assert normalizer.cache_info().misses == 3
    assert normalizer.cache_info().currsize == 2  # bounded: the oldest entry was dropped
    normalizer.normalize_user({"email": EMAIL_VECTOR[0]})
    assert normalizer.cache_info().misses == 4  # ... and is normalized again


def test_cache_disabled_gives_the_same_result() -> None:
    raw = {"email": EMAIL_VECTOR[0], "phone": PHONE_VECTOR[0], "external_id": "user_123"}
    assert user(raw, cache_size=0) == user(raw)
