"""The intake's fast paths equal their references.

* ``parse_json`` (orjson where it is sure to agree) gives exactly ``parse_json_exact``'s
  value or refusal (status, code and wording) for any body: malformed JSON, integers
  beyond 64 bits, non-UTF-8 bytes, ``NaN``, numbers beyond a double, deep nesting.
* ``read_json`` says "no lone surrogate" only of values without one, and
  ``lone_surrogate_at`` finds one exactly when the value has no UTF-8 encoding.
* ``over_limit`` (orjson's length where it decides) gives exactly ``over_limit_exact``'s
  verdict (the standard library's re-encoding) for any message, and the same exception
  where the reference raises one.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cdp_tiktok.ingest.body import (
    Refusal,
    lone_surrogate_at,
    parse_json,
    parse_json_exact,
    read_json,
)
from cdp_tiktok.ingest.sizes import over_limit, over_limit_exact
from cdp_tiktok.jsonagree import orjson_may_agree, too_deep


def outcome(read: Any, data: bytes) -> tuple[Any, ...]:
    """A comparable result: the value's exact text (ints and floats, -0.0, key order and
    lone surrogates all show), or the refusal."""
    try:
        value = read(data)
    except Refusal as refusal:
        return ("refused", refusal.status, refusal.code, refusal.message)
    return ("value", type(value).__name__, json.dumps(value, ensure_ascii=True))


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30])
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(["\ud800", "a\udc00b", "é😀", "\x00\x1f\x7f\u2028", '"\\'])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
# Pieces that break or bend JSON: where orjson and the standard library may differ.
splices = st.sampled_from(
    [b"\xff", b"\x00", b"\xef\xbb\xbf", b"\xed\xa0\x80", b'"', b"[", b"]", b"{", b"}",
     b",", b":", b"1" * 19, b"1" * 25, b"NaN", b"Infinity", b"-Infinity", b"1e400",
     b"-1e400", b"\\ud800", b"\\u00e9", b"\\", b"\t", b"\x0c", b"01", b"-0", b"1.", b".5",
     b"true", b"nul", b" ", b"a" + b"1" * 20, b"1" * 20 + b"f", b"e" + b"1" * 20,
     b"0." + b"1" * 22, b"1" * 21 + b"e5", b"1" * 20 + b"E-3", b'"' + b"9" * 20]
)  # fmt: skip


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """JSON texts, formatted in several ways, sometimes with pieces spliced in."""
    value = draw(json_values)
    text = json.dumps(
        value,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 0, 2])),
        separators=draw(st.sampled_from([None, (",", ":")])),
    )
    data = text.encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        if draw(st.booleans()):
            data = data[:at] + draw(splices) + data[at:]
        else:
            data = data[:at] + data[at + draw(st.integers(1, 3)) :]
    return data


@given(bodies())
@example(b'{"a": 1, "a": 2}')
@example(b"[1,]")
@example(b'{"n": 18446744073709551616}')
@example(b'{"n": -9223372036854775809}')
@example(b'"\\ud800"')
@example(b"\xef\xbb\xbf{}")
@example(b'{"h": "ab12345678901234567890cd", "n": 12345678901234567890}')
@example(b"[0.12345678901234567890123, 12345678901234567890e5, -12345678901234567890]")
def test_parse_json_equals_the_standard_library(data: bytes) -> None:
    assert outcome(parse_json, data) == outcome(parse_json_exact, data)


def encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(bodies())
@example(b'{"k\\udc00": 1}')
@example('["\ud800"]'.encode("utf-8", "surrogatepass"))  # raw: the standard library reads it
def test_read_json_clears_only_values_without_lone_surrogates(data: bytes) -> None:
    assert outcome(lambda text: read_json(text)[0], data) == outcome(parse_json_exact, data)
    try:
        value, may_hold = read_json(data)
    except Refusal:
        return
    if not may_hold:
        assert lone_surrogate_at(value) is None


@given(json_values)
@example({"a": [1, {"b\udc00": 2}]})
@example({"a/b~": "\ud800"})
def test_lone_surrogate_at_finds_exactly_what_cannot_be_encoded(value: Any) -> None:
    pointer = lone_surrogate_at(value)
    assert (pointer is None) == encodable(value)
    if pointer is not None:
        pointer.encode("utf-8")  # answerable: the pointer itself is Unicode text


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"18446744073709551616",  # one beyond 64 bits: orjson would read a float
        b"-9223372036854775809",
        b"123456789012345678901234567890",
        b"1" + b"0" * 5000,  # beyond the standard library's digit limit: refused
        b'{"event": "\xff"}',
        b'"\xed\xa0\x80"',  # a surrogate in UTF-8
        '{"a": "é"}'.encode("utf-16"),
        '{"a": "é"}'.encode("utf-32-le"),
        b"\xef\xbb\xbf{}",
        b"NaN",
        b'{"v": -Infinity}',
        b"1e400",
        b"-1e400",
        b'"\\udc00\\ud800"',
        b"[" * 700 + b"]" * 700,
        b"[" * 990 + b"]" * 990,
        b"[" * 1000 + b"]" * 1000,
        b"[" * 1024 + b"]" * 1024,
        b"[" * 1025 + b"]" * 1025,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"batch": [' + b",".join([b'{"p": {"q": [{}]}}'] * 400) + b"]}",
    ],
)
def test_parse_json_equals_the_standard_library_on_odd_bodies(data: bytes) -> None:
    assert outcome(parse_json, data) == outcome(parse_json_exact, data)


def test_the_fast_path_is_taken_for_ordinary_batches() -> None:
    # The equality above would hold trivially if orjson were never used.
    batch = {
        "batch": [{"type": "track", "userId": f"u{i}", "properties": {"n": i}} for i in range(100)]
    }
    data = json.dumps(batch).encode()
    assert orjson_may_agree(data) and not too_deep(batch, data)
    wide = {"batch": [{"a": {"b": [{}]}} for _ in range(500)]}  # 1,500 brackets, depth 5
    assert not too_deep(wide, json.dumps(wide).encode())
    assert not orjson_may_agree(b"[18446744073709551616]")
    assert not orjson_may_agree(b'{"n": 12345678901234567890}')
    assert not orjson_may_agree(b"-12345678901234567890")  # a number at the very start
    # digits in strings do not count: a hex digest of 19 digits in a row, a long fraction
    digest = "5" * 20 + "f" * 44
    assert orjson_may_agree(
        json.dumps({"anonymousId": digest, "v": 0.12345678901234567890}).encode()
    )
    assert parse_json(json.dumps({"h": digest}).encode()) == {"h": digest}
    assert parse_json(b"[18446744073709551616]") == [2**64]
    deep: Any = []
    for _ in range(950):
        deep = [deep]
    assert too_deep(deep, json.dumps(deep).encode())


messages = st.recursive(
    scalars
    | st.floats()  # NaN and infinities: the standard library writes them longer than orjson
    | st.sampled_from([1e-7, -1.5e-9, 1e16, math.inf, -math.inf]),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(), inner, max_size=6),
    max_leaves=40,
)


def size_verdict(check: Any, item: Any, limit: int) -> Any:
    try:
        return check(item, limit)
    except Exception as exc:  # the reference's UnicodeEncodeError for a lone surrogate
        return type(exc).__name__


@given(messages, st.floats(min_value=0.2, max_value=3.0))
@example([-math.inf] * 50, 1.0)
@example([1e-7] * 50, 1.0)
@example({"s": "\ud800" * 20}, 0.5)
@example([2**64] * 20, 1.0)
def test_over_limit_equals_reencoding(item: Any, scale: float) -> None:
    encoded = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
    size = len(encoded.encode("utf-8", "surrogatepass"))
    for limit in (int(size * scale), size - 1, size, size * 4 // 9, size * 4 // 9 + 1):
        if limit >= 0:
            assert size_verdict(over_limit, item, limit) == size_verdict(
                over_limit_exact, item, limit
            )
