"""Streaming reader: single values, arrays, JSON Lines, batch envelopes (cdp_tiktok.jsonstream)."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.jsonstream import Record, iter_messages, iter_records
from cdp_tiktok.messages import MessageError


class Trickle:
    """A binary stream that returns at most ``step`` bytes per read (chunk boundaries
    inside every token)."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self._data, self._step, self._at = data, step, 0

    def read(self, size: int = -1) -> bytes:
        size = self._step if size < 0 else min(size, self._step)
        chunk = self._data[self._at : self._at + size]
        self._at += len(chunk)
        return chunk


def records(text: str | bytes) -> list[Record]:
    stream = io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text)
    return list(iter_records(stream, "t"))


def test_jsonl_bad_lines_are_reported_and_reading_continues() -> None:
    text = '{"a": 1}\n\n{"b": 2}\nnot json\n{"c": 3,\n{"d": 4}\n[1]\n'
    got = records(text)
    assert [(r.line, r.value) for r in got if r.error is None] == [
        (1, {"a": 1}),
        (3, {"b": 2}),
        (6, {"d": 4}),
        (7, [1]),  # one line, one value: an array on a line is not expanded
    ]
    errors = [(r.line, r.error) for r in got if r.error is not None]
    assert [line for line, _ in errors] == [4, 5]
    assert errors[0][1] == "invalid JSON: Expecting value (line 4, column 1)"


def test_top_level_array_elements_carry_their_own_lines() -> None:
    text = '[\n  {"a": 1},\n  {"b": 2}, {"c": 3},\n\n  42\n]\n'
    assert [(r.line, r.value) for r in records(text)] == [
        (2, {"a": 1}),
        (3, {"b": 2}),
        (3, {"c": 3}),
        (5, 42),
    ]


def test_syntax_error_inside_an_array_ends_the_input() -> None:
    got = records('[\n{"a": 1},\n{"b": 2 x},\n{"c": 3}\n]')
    assert [r.value for r in got[:1]] == [{"a": 1}]
    assert got[1].line == 3 and got[1].error is not None
    assert "line 3" in got[1].error
    assert len(got) == 2
    unclosed = records('[{"a": 1},')
    assert unclosed[-1].error == "invalid JSON: the array is not closed"


def test_pretty_printed_single_object() -> None:
    text = '\n{\n  "type": "track",\n  "properties": {\n    "x": [1, 2]\n  }\n}\n'
    assert records(text) == [Record(2, {"type": "track", "properties": {"x": [1, 2]}})]


def test_bom_and_text_streams() -> None:
    assert records('\ufeff{"a": 1}'.encode()) == [Record(1, {"a": 1})]
    assert records('\ufeff[{"a": 1}]') == [Record(1, {"a": 1})]


def test_invalid_utf8_is_a_line_error() -> None:
    got = records(b'{"a": "\xff"}\n{"b": "\xc3\xa9"}\n')
    assert got == [Record(1, None, "invalid UTF-8"), Record(2, {"b": "é"})]


def test_oversized_number_is_an_error_not_a_crash() -> None:
    got = records("1" * 5000 + '\n{"a": 1}\n')
    assert got[0].error is not None and got[0].line == 1
    assert got[1] == Record(2, {"a": 1})


_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150)
@given(st.lists(_values, max_size=8), st.integers(1, 9), st.booleans())
def test_chunk_boundaries_never_change_values(values: list[Any], step: int, pretty: bool) -> None:
    # A top-level array is streamed element by element, so JSON Lines values here are
    # anything but arrays; the array form covers nested arrays.
    values = [v for v in values if not isinstance(v, list)]
    indent = 2 if pretty else None
    as_lines = "\n".join(json.dumps(v) for v in values).encode()
    elements = [*values, [values]]
    as_array = json.dumps(elements, indent=indent).encode()
    assert [r.value for r in iter_records(Trickle(as_lines, step), "t")] == values
    got = list(iter_records(Trickle(as_array, step), "t"))
    assert all(r.error is None for r in got)
    assert [r.value for r in got] == elements


def test_iter_messages_validates_and_expands_batches() -> None:
    lines = [
        {"type": "track", "event": "A", "userId": "u"},
        {
            "batch": [
                {"type": "track", "event": "B", "anonymousId": "a"},
                {"type": "track", "userId": "u"},
            ],
            "context": {"ip": "1.2.3.4"},
            "sentAt": "2024-01-01T00:00:00Z",
        },
        {"batch": "nope"},
        {"type": "screen"},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\nbroken\n"
    got = list(iter_messages(io.StringIO(text), "in.jsonl"))
    assert [line for line, _ in got] == [1, 2, 2, 3, 4, 5]
    ok = [m for _, m in got if not isinstance(m, MessageError)]
    assert [m["event"] for m in ok] == ["A", "B"]
    assert ok[1]["context"] == {"ip": "1.2.3.4"}
    assert ok[1]["sentAt"] == "2024-01-01T00:00:00Z"
    errors = [str(m) for _, m in got if isinstance(m, MessageError)]
    assert errors[0] == "in.jsonl:2: /batch/1/event: is required on a track message"
    assert errors[1] == "in.jsonl:3: /batch: must be an array of messages"
    assert errors[2].startswith("in.jsonl:4: ")
    assert errors[3] == "in.jsonl:5: invalid JSON: Expecting value (line 5, column 1)"


def _write_jsonl(path: Path, count: int) -> int:
    line = (
        '{"type":"track","event":"Order Completed","userId":"user-%d",'
        '"messageId":"m-%d","timestamp":"2024-05-01T12:00:00Z",'
        '"properties":{"revenue":19.99,"currency":"usd","order_id":"o-%d"}}\n'
    )
    with path.open("w") as handle:
        for n in range(count):
            handle.write(line % (n, n, n))
    return path.stat().st_size


def test_big_jsonl_is_streamed_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    size = _write_jsonl(path, 100_000)
    assert size > 15_000_000
    tracemalloc.start()
    try:
        with path.open("rb") as handle:
            seen = 0
            for _, message in iter_messages(handle, str(path)):
                assert not isinstance(message, MessageError)
                seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == 100_000
    assert peak < 4_000_000, f"peak {peak} bytes for a {size} byte file"


def test_big_single_line_array_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    element = '{"type":"page","anonymousId":"a-%d","properties":{"url":"https://x.example/%d"}}'
    with path.open("w") as handle:
        handle.write("[" + ",".join(element % (n, n) for n in range(150_000)) + "]")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        with path.open("rb") as handle:
            count = sum(1 for record in iter_records(handle, "big") if record.error is None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 150_000
    assert peak < size / 10, f"peak {peak} bytes for a {size} byte array"
