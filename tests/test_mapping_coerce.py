"""Typing by target field: the coercion table."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp_tiktok.mapping.coerce import (
    FIELD_TYPES,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_STRING,
    CoerceError,
    coercer_for,
    json_value,
    to_boolean,
    to_currency,
    to_integer,
    to_number,
    to_string,
    to_unix_seconds,
)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("event_id", 123, "123"),
        ("event_id", 12.0, "12"),
        ("event_id", 12.5, "12.5"),
        ("properties.order_id", "A-1", "A-1"),
        ("properties.contents[].content_id", 4711, "4711"),
        ("properties.value", "12.50", 12.5),
        ("properties.value", "12", 12),
        ("properties.value", 0, 0),
        ("properties.contents[].price", " 3.5 ", 3.5),
        ("properties.contents[].quantity", "3", 3),
        ("properties.contents[].quantity", 2.0, 2),
        ("properties.num_items", 7, 7),
        ("properties.currency", " usd ", "USD"),
        ("event_time", "2025-01-01T00:00:00Z", 1735689600),
        ("event_time", "2025-01-01T01:00:00+01:00", 1735689600),
        ("event_time", 1735689600, 1735689600),
        ("event_time", 1735689600123, 1735689600),
        ("event_time", 1735689600.9, 1735689600),
        ("limited_data_use", False, False),
        ("limited_data_use", "true", True),
        ("limited_data_use", 0, False),
        ("properties.content_ids", ["a", 1], ["a", "1"]),
        ("properties.content_ids", "a", ["a"]),
        ("properties.custom", {"a": [1, "x", None]}, {"a": [1, "x", None]}),
    ],
)
def test_coercion_table(path: str, value: Any, expected: Any) -> None:
    result = coercer_for(path)(value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("event_id", True),
        ("event_id", {"a": 1}),
        ("event_id", float("nan")),
        ("properties.value", "1,000"),
        ("properties.value", "$5"),
        ("properties.value", "nan"),
        ("properties.value", float("inf")),
        ("properties.value", True),
        ("properties.value", [1]),
        ("properties.contents[].quantity", 2.5),
        ("properties.contents[].quantity", "two"),
        ("properties.currency", "euro"),
        ("properties.currency", 978),
        ("event_time", "yesterday"),
        ("event_time", True),
        ("event_time", -5),
        ("limited_data_use", "maybe"),
        ("limited_data_use", 2),
        ("properties.custom", float("nan")),
        ("properties.order_id", "x" * (MAX_STRING + 1)),  # event_id: hashed instead
    ],
)
def test_uncoercible_values_raise_a_reason_without_the_value(path: str, value: Any) -> None:
    with pytest.raises(CoerceError) as info:
        coercer_for(path)(value)
    if isinstance(value, str) and len(value) > 2:
        assert value not in info.value.reason


def test_every_table_entry_has_a_coercer() -> None:
    for path in FIELD_TYPES:
        assert callable(coercer_for(path))


@given(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-1e9, max_value=1e9))
def test_decimal_text_becomes_the_same_number(value: Decimal) -> None:
    number = to_number(str(value))
    assert math.isclose(number, float(value), rel_tol=1e-12, abs_tol=1e-9)
    assert not isinstance(number, bool)


@given(st.integers(-(10**15), 10**15))
def test_integers_survive_as_text_and_as_numbers(value: int) -> None:
    assert to_string(value) == str(value)
    assert to_integer(str(value)) == value
    assert to_number(value) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_are_numbers_and_text_roundtrips(value: float) -> None:
    assert to_number(value) == value
    assert float(to_string(value)) == value


@given(st.booleans())
def test_false_and_zero_are_values(flag: bool) -> None:
    assert to_boolean(flag) is flag
    assert to_number(0) == 0
    assert to_integer(0) == 0


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC", min_size=3, max_size=3))
def test_currency_codes_are_upper_cased(code: str) -> None:
    assert to_currency(code) == code.upper()


@given(st.integers(0, 2**33))
def test_epoch_seconds_and_milliseconds_agree(seconds: int) -> None:
    assert to_unix_seconds(seconds) == seconds
    if seconds > 10**8:
        assert to_unix_seconds(seconds * 1000) == seconds


def test_caps_truncate_long_lists_and_refuse_deep_nesting() -> None:
    assert len(json_value(list(range(MAX_ITEMS + 5)))) == MAX_ITEMS
    deep: Any = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(CoerceError, match="nested deeper"):
        json_value(deep)
