"""Property tests of match-key policy 1 (hypothesis, 500 examples each)."""

from __future__ import annotations

import json
import re
from typing import Any

import phonenumbers
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cdp_tiktok.matchkeys import (
    KEY_RULES,
    USER_KEYS,
    MatchKeyNormalizer,
    MatchKeyPolicy,
    sha256_hex,
)

HEX64 = re.compile(r"[0-9a-f]{64}")
HASHED_KEYS = [key for key, rule in KEY_RULES.items() if rule.hashed]
NORMALIZER = MatchKeyNormalizer()
REGIONS = ["US", "GB", "FR", "DE", "IN", "BR", "JP", "CN", "AU", "ES", "IT", "MX", "NG"]

whitespace = st.text(alphabet=" \t\n\r", max_size=3)
scalar_raw = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.booleans(),
    st.floats(allow_nan=True),
    st.emails(),
    st.from_regex(r"\+?[0-9 ()\-]{4,20}", fullmatch=True),
    st.from_regex(r"[0-9a-fA-F]{64}", fullmatch=True),
)
raw_value = st.one_of(scalar_raw, st.lists(scalar_raw, max_size=4))
raw_users = st.dictionaries(st.sampled_from(USER_KEYS), raw_value, max_size=len(USER_KEYS))


@st.composite
def case_flips(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(
        c.swapcase() if f and c.isascii() else c for c, f in zip(text, flips, strict=True)
    )


@st.composite
def phone_numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    """A valid mobile number of a region: the region's example with random last digits."""
    region = draw(st.sampled_from(REGIONS))
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = str(example.national_number)
    tail = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    number = phonenumbers.PhoneNumber(
        country_code=example.country_code, national_number=int(national[:-4] + tail)
    )
    assume(phonenumbers.is_valid_number(number))
    return region, number


def hashed_outputs(user: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key in HASHED_KEYS:
        value = user.get(key)
        if isinstance(value, list):
            out.extend(value)
        elif value is not None:
            out.append(value)
    return out


@settings(max_examples=500)
@given(raw_users)
def test_every_hashed_output_is_64_lower_case_hex(raw: dict[str, Any]) -> None:
    result = NORMALIZER.normalize_user(raw)
    for value in hashed_outputs(result.user):
        assert HEX64.fullmatch(value), value
    for key, value in result.user.items():
        assert value not in ("", []), key
        assert isinstance(value, list) == KEY_RULES[key].many
    assert all(count > 0 and ":" in name for name, count in result.dropped.items())


@settings(max_examples=500)
@given(raw_users)
def test_normalization_is_idempotent(raw: dict[str, Any]) -> None:
    once = NORMALIZER.normalize_user(raw).user
    twice = NORMALIZER.normalize_user(once)
    assert twice.user == once
    assert twice.dropped == {}


@settings(max_examples=500)
@given(st.emails(), whitespace, whitespace, st.data())
def test_email_hash_ignores_surrounding_whitespace_and_case(
    email: str, before: str, after: str, data: st.DataObject
) -> None:
    variant = before + data.draw(case_flips(email)) + after
    expected = NORMALIZER.normalize_user({"email": email.lower()}).user
    assert expected == {"email": [sha256_hex(email.lower())]}
    assert NORMALIZER.normalize_user({"email": variant}).user == expected


def written_forms(number: phonenumbers.PhoneNumber) -> list[str]:
    fmt = phonenumbers.PhoneNumberFormat
    e164 = phonenumbers.format_number(number, fmt.E164)
    international = phonenumbers.format_number(number, fmt.INTERNATIONAL)
    national = phonenumbers.format_number(number, fmt.NATIONAL)
    cc = str(number.country_code)
    significant = phonenumbers.national_significant_number(number)
    return [
        e164,
        international,
        international.replace(" ", "-"),
        "00" + international[1:],
        "00" + e164[1:],
        f"(+{cc}) {significant}",
        f"+{cc} ({significant[:3]}) {significant[3:]}",
        f"  {e164}\t",
        national,
        national.replace(" ", "-"),
        national.replace(" ", ""),
        national.replace(" ", "."),
    ]


@settings(max_examples=500)
@given(phone_numbers())
def test_one_phone_number_in_many_formats_hashes_to_one_value(
    drawn: tuple[str, phonenumbers.PhoneNumber],
) -> None:
    region, number = drawn
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    normalizer = MatchKeyNormalizer(MatchKeyPolicy(default_region=region))
    forms = written_forms(number)
    result = normalizer.normalize_user({"phone": forms})
    assert result.user == {"phone": [sha256_hex(e164)]}, forms
    assert result.dropped == {}
    # international forms need no default region
    international = [f for f in forms[:8]]
    assert NORMALIZER.normalize_user({"phone": international}).user == result.user


no_hex = st.text(min_size=1, max_size=20).map(lambda s: "user_" + s)


@settings(max_examples=500)
@given(
    st.lists(st.emails(), max_size=3),
    st.lists(phone_numbers(), max_size=3),
    st.lists(no_hex, max_size=3),
    st.lists(st.text(max_size=20).map(lambda s: s + "@@"), max_size=2),
    st.lists(st.text(min_size=1, max_size=20).map(lambda s: "name " + s), max_size=1),
)
def test_no_raw_input_appears_in_the_output(
    emails: list[str],
    phones: list[tuple[str, phonenumbers.PhoneNumber]],
    external_ids: list[str],
    bad_emails: list[str],
    names: list[str],
) -> None:
    phone_texts = [
        phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        for _, n in phones
    ]
    raw = {
        "email": emails + bad_emails,
        "phone": phone_texts,
        "external_id": external_ids,
        "first_name": names,
    }
    result = NORMALIZER.normalize_user(raw)
    output = json.dumps(list(result.user.values()))
    assert all(re.fullmatch(r"[a-z_]+:[a-z_]+", name) for name in result.dropped)
    raws = [*emails, *bad_emails, *phone_texts, *external_ids, *names]
    normalized = [e.strip().lower() for e in emails] + [p.replace(" ", "") for p in phone_texts]
    for value in raws + normalized:
        assert value.strip() not in output
    assert "@" not in output and "+" not in output


@settings(max_examples=500)
@given(
    st.lists(st.sampled_from(["a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io"]), max_size=12),
    st.integers(min_value=1, max_value=6),
    st.data(),
)
def test_lists_keep_first_seen_order_without_duplicates_up_to_the_cap(
    emails: list[str], cap: int, data: st.DataObject
) -> None:
    variants = [data.draw(case_flips(e)) + data.draw(whitespace) for e in emails]
    distinct = list(dict.fromkeys(emails))
    result = MatchKeyNormalizer(MatchKeyPolicy(max_values=cap)).normalize_user({"email": variants})
    expected = [sha256_hex(e) for e in distinct[:cap]]
    assert result.user == ({"email": expected} if expected else {})
    # every occurrence of a distinct value past the cap is counted as dropped
    over = sum(1 for e in emails if e in distinct[cap:])
    assert result.dropped == ({"email:too_many": over} if over else {})


PHONE_REGIONS = [*REGIONS, "CA", "AR", "RU", "HU", "KZ", "BY", "NZ", "KR", "ZA", "AT", "CH", "SG"]


def reference_e164(text: str, region: str | None) -> str | None:
    """libphonenumber's full parser, the yardstick for the policy's phone rule."""
    text = re.sub(r"^[\s(\[]*00", "+", text, count=1)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if (
        phonenumbers.is_possible_number_with_reason(number)
        != phonenumbers.ValidationResult.IS_POSSIBLE
    ):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@st.composite
def phone_like_texts(draw: st.DrawFn) -> tuple[str, str | None]:
    """Digit strings near real numbers: examples of many regions with digits changed,
    inserted or removed, written with or without "+"/"00", national or international."""
    region = draw(st.sampled_from(PHONE_REGIONS))
    kind = draw(st.sampled_from(list(phonenumbers.PhoneNumberType.values())))
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(
        region
    )
    assert example is not None
    digits = list(phonenumbers.national_significant_number(example))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(digits)))
        digit = draw(st.sampled_from("0123456789"))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "insert" or not digits:
            digits.insert(at, digit)
        elif action == "replace":
            digits[min(at, len(digits) - 1)] = digit
        else:
            del digits[min(at, len(digits) - 1)]
    national = "".join(digits)
    prefix = draw(st.sampled_from(["", "0", "1", "8", "+", "00", "+{cc}", "00{cc}", "{cc}"]))
    text = prefix.format(cc=example.country_code) + draw(st.sampled_from(["", " "])) + national
    default = draw(st.sampled_from([region, None, "US"]))
    return text, default


@settings(max_examples=500)
@given(phone_like_texts())
def test_phone_rule_agrees_with_the_full_libphonenumber_parser(
    drawn: tuple[str, str | None],
) -> None:
    text, region = drawn
    normalizer = MatchKeyNormalizer(MatchKeyPolicy(default_region=region, cache_size=0))
    expected = reference_e164(text, region)
    result = normalizer.normalize_user({"phone": text})
    if expected is None:
        assert result.user == {}, (text, region)
    else:
        assert result.user == {"phone": [sha256_hex(expected)]}, (text, region, expected)
