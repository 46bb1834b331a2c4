"""Streaming JSON reader: one JSON value, a top-level JSON array, or JSON Lines.

The input is read as a sequence of whitespace-separated JSON values, so one object, a
pretty-printed object, and JSON Lines all work the same way. A top-level array is
streamed element by element: a 1 GB array never sits in memory whole. Memory stays
bounded by the read window plus the largest single value.

Errors never stop JSON Lines input: a bad line yields an error record with its line
number and reading resumes on the next line. Inside a top-level array a syntax error
cannot be skipped safely (where would the next element start?), so it yields one error
record and ends the input.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cdp_tiktok.messages import (
    FieldError,
    MessageError,
    expand_batch,
    is_batch,
    validate_message,
)

__all__ = ["Readable", "Record", "iter_messages", "iter_records"]

CHUNK_SIZE: Final = 64 * 1024
# Largest array element the scanner waits for before declaring it broken.
MAX_ELEMENT_SIZE: Final = 64 * 1024 * 1024

_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
_BAD_BYTES: Final = re.compile(r"[\udc80-\udcff]")  # undecodable bytes (surrogateescape)
_NUMBER_TAIL: Final = re.compile(r"[0-9.eE+-]*")
_DECODER: Final = json.JSONDecoder()


class Readable(Protocol):
    """What the reader needs: ``read(size)`` returning bytes (UTF-8) or text, empty at
    the end. Binary and text files, ``sys.stdin``, ``gzip.GzipFile`` all qualify."""

    def read(self, size: int, /) -> bytes | str: ...


@dataclass(frozen=True, slots=True)
class Record:
    """One top-level value (or array element) and the line it starts on.

    Exactly one of ``value``/``error`` is meaningful: ``error`` is ``None`` for a decoded
    value, else a short description of why the text at ``line`` is not JSON.
    """

    line: int
    value: Any
    error: str | None = None


class _Incomplete(Exception):
    """More input is needed to decide."""


class _Scanner:
    """A window over the decoded text, with the line number at the read position."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._binary = isinstance(stream.read(0), bytes)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.buf = ""
        self.pos = 0
        self.line = 1
        self.eof = False
        self._started = False

    def fill(self, at_least: int = CHUNK_SIZE) -> bool:
        """Append more text to the window; False at end of input."""
        if self.eof:
            return False
        if self.pos:
            self.buf = self.buf[self.pos :]
            self.pos = 0
        raw = self._stream.read(at_least)
        text = self._decoder.decode(raw, final=not raw) if isinstance(raw, bytes) else raw
        if not raw:
            self.eof = True
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        self.buf += text
        return bool(text) or not self.eof

    def advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end

    def skip_whitespace(self) -> bool:
        """Move past whitespace; False when the input is exhausted."""
        while True:
            match = _WHITESPACE.match(self.buf, self.pos)
            assert match is not None
            self.advance(match.end())
            if self.pos < len(self.buf):
                return True
            if not self.fill():
                return False

    def peek(self) -> str:
        return self.buf[self.pos]

    def line_of(self, index: int) -> int:
        return self.line + self.buf.count("\n", self.pos, index)

    def skip_to_line(self, line: int) -> None:
        """Move to the start of ``line`` (or the end of input)."""
        while self.line < line:
            newline = self.buf.find("\n", self.pos)
            if newline < 0:
                self.advance(len(self.buf))
                if not self.fill():
                    return
                continue
            self.advance(newline + 1)


def _maybe_incomplete(error: json.JSONDecodeError, size: int) -> bool:
    """Could ``error`` disappear with more input? (It is decisive when it sits well
    before the end of the window, except for a string still open at the window's end.)"""
    return error.msg.startswith("Unterminated string") or error.pos >= size - 16


def _decode_at(scanner: _Scanner, limit: int | None) -> tuple[Any, int]:
    """Decode the value at the scanner's position, growing the window as needed."""
    while True:
        buf, pos = scanner.buf, scanner.pos
        try:
            value, end = _DECODER.raw_decode(buf, pos)
        except json.JSONDecodeError as error:
            if scanner.eof or not _maybe_incomplete(error, len(buf)):
                raise
            if limit is not None and len(buf) - pos > limit:
                raise
        else:
            # A number may continue past the window ("1" then "2.5"): trust a value only
            # when something other than number characters follows it.
            tail = _NUMBER_TAIL.match(buf, end)
            assert tail is not None
            if tail.end() < len(buf) or scanner.eof:
                return value, end
        scanner.fill(max(CHUNK_SIZE, len(buf) - pos))


def _describe(error: Exception, scanner: _Scanner) -> tuple[str, int]:
    """A value-free reason and the line the problem sits on."""
    if isinstance(error, json.JSONDecodeError):
        line = scanner.line_of(error.pos)
        column = error.pos - (scanner.buf.rfind("\n", 0, error.pos) + 1) + 1
        return f"invalid JSON: {error.msg} (line {line}, column {column})", line
    if isinstance(error, RecursionError):
        return "invalid JSON: nested too deeply", scanner.line
    return f"invalid JSON: {error}", scanner.line


def _record(scanner: _Scanner, start_line: int, value: Any, end: int) -> Record:
    """The record for a value decoded up to ``end``; moves past it."""
    bad = _BAD_BYTES.search(scanner.buf, scanner.pos, end) is not None
    scanner.advance(end)
    return Record(start_line, None, "invalid UTF-8") if bad else Record(start_line, value)


def _iter_array(scanner: _Scanner) -> Iterator[Record]:
    """Elements of the array whose ``[`` is at the scanner's position."""
    scanner.advance(scanner.pos + 1)
    first = True
    while True:
        if not scanner.skip_whitespace():
            yield Record(scanner.line, None, "invalid JSON: the array is not closed")
            return
        char = scanner.peek()
        if char == "]":
            scanner.advance(scanner.pos + 1)
            return
        if not first:
            if char != ",":
                yield Record(scanner.line, None, "invalid JSON: expected ',' or ']' in the array")
                scanner.advance(len(scanner.buf))
                scanner.eof = True
                return
            scanner.advance(scanner.pos + 1)
            if not scanner.skip_whitespace():
                yield Record(scanner.line, None, "invalid JSON: the array is not closed")
                return
        first = False
        start_line = scanner.line
        try:
            value, end = _decode_at(scanner, MAX_ELEMENT_SIZE)
        except (ValueError, RecursionError) as error:
            reason, _ = _describe(error, scanner)
            yield Record(start_line, None, reason)
            scanner.advance(len(scanner.buf))
            scanner.eof = True  # cannot resynchronize inside an array
            return
        yield _record(scanner, start_line, value, end)


def iter_records(stream: Readable, source: str) -> Iterator[Record]:
    """Every top-level JSON value of ``stream`` (array elements one by one), in order.

    ``stream`` may be binary (UTF-8, optional BOM) or text. Line numbers are 1-based and
    give the line where each value starts. Blank lines are skipped. ``source`` names the
    input in nothing but the caller's messages; it is accepted for symmetry with
    :func:`iter_messages`.
    """
    del source  # records carry line numbers only
    scanner = _Scanner(stream)
    while scanner.skip_whitespace():
        start_line = scanner.line
        if scanner.peek() == "[":
            yield from _iter_array(scanner)
            continue
        try:
            value, end = _decode_at(scanner, None)
        except (ValueError, RecursionError) as error:
            reason, error_line = _describe(error, scanner)
            yield Record(start_line, None, reason)
            # JSON Lines: resume on the next line, or on the line that broke a value
            # spanning several lines (a truncated line followed by a good one).
            scanner.skip_to_line(max(start_line + 1, error_line))
            continue
        yield _record(scanner, start_line, value, end)


def iter_messages(
    stream: Readable, source: str
) -> Iterator[tuple[int, dict[str, Any] | MessageError]]:
    """Validated messages of ``stream``, each with the line it starts on.

    Reads whatever :func:`iter_records` reads; batch envelopes (``{"batch": [...]}``)
    are expanded with :func:`~cdp_tiktok.messages.expand_batch`, their items reported on
    the envelope's line with pointers under ``/batch/<index>``. A JSON syntax error is a
    :class:`MessageError` with an empty pointer.
    """
    for record in iter_records(stream, source):
        line = record.line
        if record.error is not None:
            yield line, MessageError([FieldError("", record.error)], line=line, source=source)
            continue
        if not is_batch(record.value):
            try:
                yield line, validate_message(record.value, line=line, source=source)
            except MessageError as error:
                yield line, error
            continue
        try:
            items = expand_batch(record.value, line=line, source=source)
        except MessageError as error:
            yield line, error
            continue
        for index, item in enumerate(items):
            try:
                yield line, validate_message(item, line=line, source=source)
            except MessageError as error:
                yield line, error.prefixed(f"/batch/{index}")
