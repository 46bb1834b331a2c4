"""jsonout.line_writer writes exactly the bytes json's text path writes (orjson or not)."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.jsonout import dumps_line, line_writer

_texts = st.text(st.characters(codec=None), max_size=5)  # lone surrogates included
_floats = st.one_of(
    st.floats(),  # NaN and the infinities too
    st.floats(1e-6, 1e-3) | st.floats(-1e-3, -1e-6),  # around 1e-4
    st.floats(1e15, 1e17) | st.floats(-1e17, -1e15),  # where repr() turns to exponents
    st.floats(1e-12, 1e-8) | st.floats(1e300, 1.7e308),
    st.sampled_from([1e-4, -1e-4, 1e16, -1e16, 0.0, -0.0, 5e-324, 9999999999999998.0]),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(2**63 - 2, 2**64 + 2) | st.integers(-(2**63) - 2, -(2**63) + 2),
    _floats,
    _texts,
)
_odd = st.one_of(  # what json encodes otherwise, or refuses, and orjson would encode
    st.tuples(st.integers()),
    st.just(datetime(2025, 1, 1, tzinfo=UTC)),
    st.dictionaries(st.integers() | st.booleans() | st.none(), st.integers(), max_size=2),
)
_values = st.recursive(
    st.one_of(_scalars, _odd),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)


def _written(value: Any, *, fast: bool, errors: str = "strict") -> tuple[bytes, str | None]:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors=errors, write_through=False)
    try:
        if fast:
            line_writer(stream)(value)
        else:
            stream.write(dumps_line(value))
        stream.flush()
    except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
        stream.flush()
        return raw.getvalue(), type(error).__name__
    return raw.getvalue(), None


@settings(max_examples=1500)
@given(st.one_of(st.lists(_values, max_size=3), st.dictionaries(_texts, _values, max_size=4)))
def test_the_bytes_are_json_s(value: Any) -> None:
    assert _written(value, fast=True) == _written(value, fast=False)
    assert _written(value, fast=True, errors="surrogateescape") == _written(
        value, fast=False, errors="surrogateescape"
    )


@pytest.mark.parametrize(
    "value",
    [
        {"value": 1e-5, "big": 1e16, "small": -2.5e-7, "price": 154.48, "zero": -0.0},
        {"n": 2**64, "m": -(2**63) - 1, "ok": 2**64 - 1},
        {"name": "Café 😀 \u2028", "ctrl": "\x00\x1f\x7f", "quote": '"\\/'},
        [math.nan],
        [math.inf],
        {"v": {"w": [-math.inf]}},
        {"at": datetime(2025, 1, 1, tzinfo=UTC)},
        {"s": "\ud800"},
        {1: "one", None: "none"},
    ],
)
def test_the_values_orjson_writes_differently_or_refuses(value: Any) -> None:
    assert _written(value, fast=True) == _written(value, fast=False)


def test_an_event_takes_the_orjson_path_and_reads_back() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")
    event = {"event": "Purchase", "event_time": 1735689600, "properties": {"value": 10.5}}
    line_writer(stream)(event)
    assert (
        raw.getvalue()
        == b'{"event":"Purchase","event_time":1735689600,"properties":{"value":10.5}}\n'
    )


def test_a_line_buffered_or_non_utf8_stream_is_written_as_text() -> None:
    for stream in (
        io.TextIOWrapper(io.BytesIO(), encoding="utf-8", line_buffering=True),
        io.TextIOWrapper(io.BytesIO(), encoding="latin-1"),
        io.StringIO(),
    ):
        line_writer(stream)({"name": "é"})
        stream.seek(0)
        assert stream.read() == '{"name":"é"}\n'


def test_a_uuid_or_plain_enum_is_written_as_the_outbox_stores_it() -> None:
    # json refuses both; the outbox stores events with orjson, which writes them
    import enum
    import uuid

    from cdp_tiktok.delivery.outbox import encode_data

    class Color(enum.Enum):
        RED = "red"

    value = {"id": uuid.UUID(int=7), "color": Color.RED}
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")
    line_writer(stream)(value)
    stream.flush()
    assert raw.getvalue() == (encode_data(value) + "\n").encode()
    with pytest.raises(TypeError):
        dumps_line(value)
