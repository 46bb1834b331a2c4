"""The outbox's orjson encoding equals json's: same JSON value, same refusals.

``encode_data`` writes an event's ``data[]`` item with orjson and falls back to
:mod:`json` for whatever orjson refuses or would write differently (NaN and infinity
become ``null`` in orjson; integers beyond 64 bits, non-string keys, subclasses); the
slow path is json with the outbox's options.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp_tiktok.delivery.outbox import encode_data
from cdp_tiktok.tiktok.payload import encode_event

slow = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.floats()  # NaN and infinities too
    | st.text()  # lone surrogates, U+2028, control characters
)
keys = st.text() | st.integers(-5, 5) | st.booleans()
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=20,
)


def outcome(encode: Any, data: Any) -> tuple[str, Any]:
    """The decoded JSON value an encoder wrote, or the kind of error it raised."""
    try:
        text = encode(data)
    except (TypeError, ValueError) as exc:
        return ("error", ValueError if isinstance(exc, ValueError) else TypeError)
    return ("value", json.loads(text))


def same(a: Any, b: Any) -> bool:
    """Equal JSON values (NaN never occurs in a written value)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@given(st.dictionaries(keys, values, max_size=6))
def test_encode_data_writes_what_json_writes_and_refuses_what_it_refuses(data: Any) -> None:
    fast, reference = outcome(encode_data, data), outcome(slow, data)
    assert fast[0] == reference[0]
    assert same(fast[1], reference[1])


class Colour(StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "data",
    [
        {"value": math.nan},
        {"value": [1.5, -math.inf]},
        {"deep": {"deeper": [{"x": math.inf}]}},
        {"big": 2**64, "neg": -(2**63) - 1},
        {2: "int key", True: "bool key", None: "null key"},
        {"enum": Colour.RED},
        {"null": None, "text": "é \u2028 \x00"},
        {"set": {1, 2}},
        {"bytes": b"x"},
    ],
)
def test_the_values_orjson_treats_otherwise_take_json_route(data: dict[Any, Any]) -> None:
    assert outcome(encode_data, data) == outcome(slow, data)


@given(st.dictionaries(st.text(), values, max_size=6))
def test_the_stored_text_decodes_as_the_request_item(data: dict[str, Any]) -> None:
    try:
        expected = json.loads(encode_event(data))
    except (TypeError, ValueError):
        return
    assert same(json.loads(encode_data(data)), expected)
