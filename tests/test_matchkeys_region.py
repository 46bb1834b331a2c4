"""Phone numbers without country code read with the region the message gives (issue 8.9)."""

from __future__ import annotations

from typing import Any

import pytest

from cdp_tiktok.matchkeys import (
    MatchKeyNormalizer,
    MatchKeyPolicy,
    locale_region,
    phone_region,
    sha256_hex,
)

US = sha256_hex("+14155552671")
FR = sha256_hex("+33612345678")


def keys(message: dict[str, Any] | None, phone: Any = "(415) 555-2671", **policy: Any) -> Any:
    return MatchKeyNormalizer(MatchKeyPolicy(**policy)).normalize_user({"phone": phone}, message)


@pytest.mark.parametrize(
    ("message", "source"),
    [
        ({"traits": {"address": {"country": "US"}}}, "traits.address.country"),
        (
            {"context": {"traits": {"address": {"country": "us "}}}},
            "context.traits.address.country",
        ),
        ({"context": {"locale": "en-US"}}, "context.locale"),
        ({"context": {"locale": "en_US"}}, "context.locale"),
    ],
)
def test_a_national_number_is_read_with_the_region_of_the_message(
    message: dict[str, Any], source: str
) -> None:
    result = keys(message)
    assert result.user == {"phone": [US]}
    assert result.phone_regions == {source: 1}
    assert result.dropped == {}


def test_precedence_address_then_context_address_then_locale_then_default() -> None:
    both = {
        "traits": {"address": {"country": "FR"}},
        "context": {"locale": "en-US", "traits": {"address": {"country": "US"}}},
    }
    assert keys(both, "06 12 34 56 78").user == {"phone": [FR]}
    context_first = {"context": {"locale": "en-US", "traits": {"address": {"country": "FR"}}}}
    assert keys(context_first, "06 12 34 56 78").user == {"phone": [FR]}
    locale_first = {"context": {"locale": "fr-FR"}}
    assert keys(locale_first, "06 12 34 56 78", default_region="US").user == {"phone": [FR]}
    fallback = keys({"context": {"locale": "en"}}, default_region="US")
    assert fallback.user == {"phone": [US]}
    assert fallback.phone_regions == {"default_phone_region": 1}


def test_a_country_that_is_not_a_region_code_is_skipped() -> None:
    message = {"traits": {"address": {"country": "United States"}}, "context": {"locale": "en-US"}}
    assert keys(message).phone_regions == {"context.locale": 1}


def test_inference_can_be_turned_off() -> None:
    message = {"context": {"locale": "en-US"}}
    off = keys(message, infer_region=False)
    assert off.user == {} and off.dropped == {"phone:no_region": 1}
    assert keys(message, infer_region=False, default_region="US").user == {"phone": [US]}


def test_without_any_region_the_number_is_dropped_as_no_region() -> None:
    result = keys({"context": {}})
    assert result.user == {} and result.dropped == {"phone:no_region": 1}
    assert keys(None).dropped == {"phone:no_region": 1}


def test_international_numbers_ignore_the_region_and_are_not_counted() -> None:
    result = keys({"context": {"locale": "en-US"}}, ["+33 6 12 34 56 78", "(415) 555-2671", None])
    assert result.user == {"phone": [FR, US]}
    assert result.phone_regions == {"context.locale": 1}


def test_the_region_is_looked_up_once_and_the_result_is_cached() -> None:
    normalizer = MatchKeyNormalizer(MatchKeyPolicy())
    message = {"context": {"locale": "en-US"}}
    for _ in range(3):
        assert normalizer.normalize_user({"phone": "(415) 555-2671"}, message).user == {
            "phone": [US]
        }
    # once as an international number (no region), once with the region
    assert normalizer.cache_info().misses == 2


def test_region_helpers() -> None:
    assert locale_region("zh-Hant-TW") == "TW"
    assert locale_region("en") is None
    assert phone_region({"traits": {"address": {"country": "uk"}}}, MatchKeyPolicy()) == (
        "GB",
        "traits.address.country",
    )
    assert phone_region({}, MatchKeyPolicy()) is None
