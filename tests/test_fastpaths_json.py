"""orjson fast paths equal the json module's results exactly (jsonstream lines)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.jsonstream import _json_line_record, _line_record

_texts = st.text(st.characters(codec=None), max_size=6)  # lone surrogates included
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(2**63 - 3, 2**64 + 3) | st.integers(-(2**63) - 3, -(2**63) + 3),
    st.integers(10**17, 10**30).map(lambda n: n * (-1) ** (n % 2)),
    st.floats(),  # NaN and infinities too
    _texts,
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)
_number_literals = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)


def _encoded(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


_lines = st.one_of(
    st.builds(_encoded, _values, st.booleans()),
    _number_literals.map(lambda n: b'{"a":' + n.encode() + b"}"),
    st.builds(
        lambda raw, at, junk: raw[:at] + junk + raw[at:],
        st.builds(_encoded, _values, st.booleans()),
        st.integers(0, 40),
        st.binary(min_size=1, max_size=3),
    ),
)


def _same(raw: bytes) -> None:
    # repr tells 1 from 1.0 and True, -0.0 from 0.0, and shows NaN (NaN != NaN).
    assert repr(_line_record(raw, 3)) == repr(_json_line_record(raw, 3))


@settings(max_examples=1500)
@given(_lines)
def test_a_line_reads_as_json_reads_it(raw: bytes) -> None:
    _same(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id":123456789012345678901234567890}',  # orjson would give a float
        b'{"id":-9223372036854775809}',
        b'{"id":18446744073709551616}',
        b'{"v":NaN,"w":-Infinity}',
        b'{"v":1e400}',
        b'{"s":"\\ud800"}',  # a lone surrogate escape: U+FFFD, as before
        b'{"s":"\\ud83d\\ude00 caf\xc3\xa9"}',
        b'{"s":"\xff"}',
        b"\xef\xbb\xbf{}",
        b"[" * 1100 + b"]" * 1100,
        b"[" * 1000 + b"]" * 1000,  # orjson reads it; json refuses it (its recursion)
        b'{"a":' * 1020 + b"1" + b"}" * 1020,
        b'{"h":"ab12345678901234567890cd","n":12345678901234567890}',
        b'{"h":"e12345678901234567890e","f":0.12345678901234567890123}',
        b'{"n":12345678901234567890e5,"m":-12345678901234567890}',
        b'{"a":1,"a":2}',
        b'{"a":1}\x0c',
        b'{"a":01}',
    ],
)
def test_the_lines_orjson_reads_differently_or_refuses(raw: bytes) -> None:
    _same(raw)


def test_big_integers_stay_exact() -> None:
    line, value, error = _line_record(b'{"id":123456789012345678901234567890}', 1)
    assert (line, value, error) == (1, {"id": 123456789012345678901234567890}, None)
