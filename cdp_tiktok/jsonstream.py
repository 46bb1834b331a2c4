"""Streaming JSON reader: one JSON value, a top-level JSON array, or JSON Lines.

The format is decided once per input, from its start, and never changes afterwards:

* the first character (after an optional byte-order mark and whitespace) is ``[``: a
  JSON array, streamed element by element; only whitespace may follow its ``]``;
* the value starting on the first line ends on a later line (a pretty-printed object),
  or the first line is a lone ``{``: one JSON value, possibly followed by more values
  separated by whitespace (as ``jq`` prints them);
* anything else: JSON Lines, where each physical line is one value, decoded on its own.

A bad JSON Lines line yields an error record with its line number and costs nothing but
itself. Inside an array or a multi-line value a syntax error cannot be skipped safely
(where would the next value start?), so it yields one error record and ends the input.

Memory stays bounded by the read window plus ``max_message_bytes``: a line, array
element or value longer than that is refused without being held whole, and reading goes
on after it where that is safe (the next line). Gzip input is recognised by its magic
bytes and decompressed as it is read, so a decompression bomb costs time, not memory.
Lone UTF-16 surrogate escapes (``"\\ud800"``, a string cut in the middle of an emoji by a
JavaScript client) are replaced by U+FFFD, as a browser's UTF-8 encoder does, so every
command sees the same, encodable text.
"""

from __future__ import annotations

import codecs
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cdp_tiktok.jsonagree import NOT_SURE, agreeing_value
from cdp_tiktok.messages import (
    FieldError,
    MessageError,
    expand_batch,
    is_batch,
    validate_message,
)

__all__ = ["MAX_MESSAGE_BYTES", "Readable", "Record", "iter_messages", "iter_records"]

CHUNK_SIZE: Final = 64 * 1024
# Default size limit of one line, array element or value: the default of the setting
# max_message_bytes (a test checks they are equal). Not read from cdp_tiktok.settings,
# which would import jsonschema and yaml into every command that only reads messages.
MAX_MESSAGE_BYTES: Final = 1_048_576
# Reads while skipping the rest of an over-long line (fewer calls for a bomb).
_SKIP_CHUNK: Final = 1024 * 1024
_GZIP_MAGIC: Final = b"\x1f\x8b"

_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
_BAD_BYTES: Final = re.compile(r"[\udc80-\udcff]")  # undecodable bytes (surrogateescape)
_NUMBER_TAIL: Final = re.compile(r"[0-9.eE+-]*")
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_DECODER: Final = json.JSONDecoder()


class Readable(Protocol):
    """What the reader needs: ``read(size)`` returning bytes (UTF-8, or gzip of it) or
    text, empty at the end. Binary and text files, ``sys.stdin``, sockets' files qualify."""

    def read(self, size: int, /) -> bytes | str: ...


@dataclass(frozen=True, slots=True)
class Record:
    """One top-level value (or array element) and the line it starts on.

    Exactly one of ``value``/``error`` is meaningful: ``error`` is ``None`` for a decoded
    value, else a short description of why the text at ``line`` is not a usable value.
    """

    line: int
    value: Any
    error: str | None = None


# What the readers below yield: (line, value, error), as a Record holds them (a tuple is
# several times cheaper to make than a frozen dataclass, once per message).
_Item = tuple[int, Any, str | None]


class _Gunzip:
    """Gzip members decompressed as they are read, never more than ``size`` at a time."""

    def __init__(self, read: Any, head: bytes) -> None:
        self._read = read
        self._input = head
        self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._started = True

    def read(self, size: int) -> bytes:
        while True:
            data = self._member.unconsumed_tail or self._input
            self._input = b""
            if not data:
                data = self._read(CHUNK_SIZE)
                if not data:
                    if self._started and not self._member.eof:
                        raise ValueError("the gzip data is truncated")
                    return b""
            self._started = True
            out = self._member.decompress(data, size)
            if self._member.eof:
                self._input = self._member.unused_data
                self._member = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._started = bool(self._input)
            if out:
                return out


class _Source:
    """The input as bytes: text streams are encoded back, gzip is decompressed. A read
    error ends the input like its end would, and is kept in ``failure``."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._text = not isinstance(stream.read(0), bytes)
        self._pending = b""
        self.failure: str | None = None
        head = self._raw(CHUNK_SIZE)
        while 0 < len(head) < 2:
            more = self._raw(CHUNK_SIZE)
            if not more:
                break
            head += more
        if head[:2] == _GZIP_MAGIC and not self._text:
            self._gunzip: _Gunzip | None = _Gunzip(self._raw, head)
        else:
            self._gunzip = None
            self._pending = head

    def _raw(self, size: int) -> bytes:
        data = self._stream.read(size)
        if isinstance(data, str):
            return data.encode("utf-8", "surrogatepass")
        return data

    def read(self, size: int = CHUNK_SIZE) -> bytes:
        """Up to ``size`` bytes (pushed-back bytes first); empty at the end or on failure."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self.failure is not None:
            return b""
        try:
            return self._gunzip.read(size) if self._gunzip is not None else self._raw(size)
        except (OSError, ValueError, EOFError, zlib.error) as error:
            reason = str(error) or type(error).__name__
            self.failure = f"cannot read the input: {reason}"
            return b""

    def push_back(self, data: bytes) -> None:
        """Make ``data`` the next bytes read."""
        self._pending = data + self._pending


class _TooLarge(Exception):
    """A value grew past the size limit before it ended."""


class _Scanner:
    """A window over the decoded text, with the line number at the read position."""

    def __init__(self, source: _Source) -> None:
        self._source = source
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
        raw = self._source.read(at_least)
        text = self._decoder.decode(raw, final=not raw)
        if not raw:
            self.eof = True
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        self.buf += text
        return bool(text) or not self.eof

    def hand_back(self) -> None:
        """Return the unread window to the source (for the JSON Lines reader)."""
        pending = self._decoder.getstate()[0]
        rest = self.buf[self.pos :].encode("utf-8", "surrogateescape")
        self._source.push_back(rest + pending)
        self.buf, self.pos = "", 0

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

    def stop(self) -> None:
        """Read nothing more."""
        self.buf, self.pos, self.eof = "", 0, True


def _maybe_incomplete(error: json.JSONDecodeError, size: int) -> bool:
    """Could ``error`` disappear with more input? (It is decisive when it sits well
    before the end of the window, except for a string still open at the window's end.)"""
    return error.msg.startswith("Unterminated string") or error.pos >= size - 16


def _decode_at(scanner: _Scanner, limit: int) -> tuple[Any, int]:
    """Decode the value at the scanner's position, growing the window up to ``limit``."""
    while True:
        buf, pos = scanner.buf, scanner.pos
        try:
            value, end = _DECODER.raw_decode(buf, pos)
        except json.JSONDecodeError as error:
            if scanner.eof or not _maybe_incomplete(error, len(buf)):
                raise
        else:
            # A number may continue past the window ("1" then "2.5"): trust a value only
            # when something other than number characters follows it.
            tail = _NUMBER_TAIL.match(buf, end)
            assert tail is not None
            if tail.end() < len(buf) or scanner.eof:
                if end - pos > limit:
                    raise _TooLarge
                return value, end
        if len(buf) - pos > limit:
            raise _TooLarge
        scanner.fill(max(CHUNK_SIZE, len(buf) - pos))


def _too_large(line: int, limit: int) -> _Item:
    return (line, None, f"longer than {limit} bytes (the message size limit)")


def _describe(error: Exception, scanner: _Scanner) -> str:
    """A value-free reason, located when it is a syntax error."""
    if isinstance(error, json.JSONDecodeError):
        line = scanner.line_of(error.pos)
        column = error.pos - (scanner.buf.rfind("\n", 0, error.pos) + 1) + 1
        return f"invalid JSON: {error.msg} (line {line}, column {column})"
    if isinstance(error, RecursionError):
        return "invalid JSON: nested too deeply"
    return f"invalid JSON: {error}"


def _replace_lone_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings and keys replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            renamed = [key for key in node if _LONE_SURROGATE.search(key)]
            for key in renamed:
                node[_LONE_SURROGATE.sub("\ufffd", key)] = node.pop(key)
            for key, item in node.items():
                if isinstance(item, str):
                    if _LONE_SURROGATE.search(item):
                        node[key] = _LONE_SURROGATE.sub("\ufffd", item)
                elif isinstance(item, dict | list):
                    stack.append(item)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    if _LONE_SURROGATE.search(item):
                        node[index] = _LONE_SURROGATE.sub("\ufffd", item)
                elif isinstance(item, dict | list):
                    stack.append(item)
    return value


def _record(scanner: _Scanner, start_line: int, value: Any, end: int) -> _Item:
    """The record for a value decoded up to ``end``; moves past it."""
    buf, pos = scanner.buf, scanner.pos
    if _BAD_BYTES.search(buf, pos, end) is not None:
        scanner.advance(end)
        return (start_line, None, "invalid UTF-8")
    if _SURROGATE_ESCAPE.search(buf, pos, end) is not None:
        value = _replace_lone_surrogates(value)
    scanner.advance(end)
    return (start_line, value, None)


def _iter_array(scanner: _Scanner, limit: int) -> Iterator[_Item]:
    """Elements of the array whose ``[`` is at the scanner's position; then the end."""
    scanner.advance(scanner.pos + 1)
    first = True
    while True:
        if not scanner.skip_whitespace():
            yield (scanner.line, None, "invalid JSON: the array is not closed")
            return
        char = scanner.peek()
        if char == "]":
            scanner.advance(scanner.pos + 1)
            if scanner.skip_whitespace():
                yield (scanner.line, None, "invalid JSON: unexpected data after the array's ']'")
                scanner.stop()
            return
        if not first:
            if char != ",":
                yield (scanner.line, None, "invalid JSON: expected ',' or ']' in the array")
                scanner.stop()
                return
            scanner.advance(scanner.pos + 1)
            if not scanner.skip_whitespace():
                yield (scanner.line, None, "invalid JSON: the array is not closed")
                return
        first = False
        start_line = scanner.line
        try:
            value, end = _decode_at(scanner, limit)
        except _TooLarge:
            yield _too_large(start_line, limit)
            scanner.stop()  # cannot resynchronize inside an array
            return
        except (ValueError, RecursionError) as error:
            yield (start_line, None, _describe(error, scanner))
            scanner.stop()
            return
        yield _record(scanner, start_line, value, end)


def _iter_values(scanner: _Scanner, limit: int) -> Iterator[_Item]:
    """Whitespace-separated values (a pretty-printed document, or several)."""
    while scanner.skip_whitespace():
        start_line = scanner.line
        try:
            value, end = _decode_at(scanner, limit)
        except _TooLarge:
            yield _too_large(start_line, limit)
            scanner.stop()
            return
        except (ValueError, RecursionError) as error:
            yield (start_line, None, _describe(error, scanner))
            scanner.stop()
            return
        yield _record(scanner, start_line, value, end)


def _line_record(raw: bytes, line: int) -> _Item:
    """The record of one JSON Lines line (not blank, not over the limit).

    orjson decodes the line when it yields exactly what :mod:`json` would
    (:func:`~cdp_tiktok.jsonagree.agreeing_value`: no run of 19 digits, which may be a
    big integer; not nested deeper than :mod:`json` reads); anything else, and anything
    orjson refuses (``NaN``, lone surrogates, invalid UTF-8, 1e400, …), goes to
    :mod:`json`, which decides and words the error, as before.
    """
    value = agreeing_value(raw)
    if value is NOT_SURE:
        return _json_line_record(raw, line)
    return (line, value, None)


def _json_line_record(raw: bytes, line: int) -> _Item:
    """:func:`_line_record` by :mod:`json` alone (the reference its fast path equals)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return (line, None, "invalid UTF-8")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as error:
        return (line, None, f"invalid JSON: {error.msg} (line {line}, column {error.colno})")
    except RecursionError:
        return (line, None, "invalid JSON: nested too deeply")
    except ValueError as error:  # e.g. an integer with too many digits
        return (line, None, f"invalid JSON: {error}")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        value = _replace_lone_surrogates(value)
    return (line, value, None)


def _iter_lines(source: _Source, line: int, limit: int) -> Iterator[_Item]:
    """JSON Lines from ``source``, the first one numbered ``line``."""
    partial: list[bytes] = []
    size = 0
    while True:
        chunk = source.read(CHUNK_SIZE)
        if not chunk:
            break
        pieces = chunk.split(b"\n")
        last = pieces.pop()
        if pieces and partial:
            partial.append(pieces[0])
            pieces[0] = b"".join(partial)
            partial, size = [], 0
        for raw in pieces:
            if len(raw) > limit:
                yield _too_large(line, limit)
            elif raw and not raw.isspace():
                yield _line_record(raw, line)
            line += 1
        if last:
            partial.append(last)
            size += len(last)
            if size > limit:
                yield _too_large(line, limit)
                partial, size = [], 0
                if not _skip_line(source):
                    return
                line += 1
    if partial:
        raw = b"".join(partial)
        if not raw.isspace():
            yield _line_record(raw, line)


def _skip_line(source: _Source) -> bool:
    """Discard input up to and including the next newline; False at the end."""
    while True:
        chunk = source.read(_SKIP_CHUNK)
        if not chunk:
            return False
        newline = chunk.find(b"\n")
        if newline >= 0:
            source.push_back(chunk[newline + 1 :])
            return True


def _iter_input(source: _Source, limit: int) -> Iterator[_Item]:
    """Decide the format from the start of the input, then read it that way."""
    scanner = _Scanner(source)
    if not scanner.skip_whitespace():
        return
    if scanner.peek() == "[":
        yield from _iter_array(scanner, limit)
        return
    start_line = scanner.line
    newline = scanner.buf.find("\n", scanner.pos)
    lone_brace = newline >= 0 and scanner.buf[scanner.pos : newline].strip() == "{"
    try:
        _, end = _decode_at(scanner, limit)
        spans_lines = scanner.line_of(end) > start_line
    except (ValueError, RecursionError, _TooLarge):
        spans_lines = False
    if spans_lines or lone_brace:
        yield from _iter_values(scanner, limit)
        return
    scanner.hand_back()
    yield from _iter_lines(source, start_line, limit)


def iter_records(
    stream: Readable, source: str, *, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> Iterator[Record]:
    """Every top-level JSON value of ``stream`` (array elements one by one), in order.

    ``stream`` may be binary (UTF-8, optional BOM, or gzip of it) or text. The format is
    decided from the start (see the module docstring). Line numbers are 1-based and give
    the line where each value starts. Blank lines are skipped. A value, line or array
    element longer than ``max_message_bytes`` is an error record, never held whole. A
    read error (e.g. truncated gzip) ends the input with one error record, which replaces
    the error of the value it cut short. ``source``
    names the input in nothing but the caller's messages; it is accepted for symmetry
    with :func:`iter_messages`.
    """
    del source  # records carry line numbers only
    for line, value, error in _items(stream, max_message_bytes):
        yield Record(line, value, error)


def _items(stream: Readable, limit: int) -> Iterator[_Item]:
    """:func:`iter_records`, as tuples."""
    reader = _Source(stream)
    line = 1
    for item in _iter_input(reader, limit):
        line = item[0]
        if item[2] is not None and reader.failure is not None:
            break  # the read error cut this value short: it is the one to report
        yield item
    if reader.failure is not None:
        yield (line, None, reader.failure)


def iter_messages(
    stream: Readable, source: str, *, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> Iterator[tuple[int, dict[str, Any] | MessageError]]:
    """Validated messages of ``stream``, each with the line it starts on.

    Reads whatever :func:`iter_records` reads; batch envelopes (``{"batch": [...]}``)
    are expanded with :func:`~cdp_tiktok.messages.expand_batch`, their items reported on
    the envelope's line with pointers under ``/batch/<index>``. A JSON syntax error is a
    :class:`MessageError` with an empty pointer.
    """
    for line, value, failure in _items(stream, max_message_bytes):
        if failure is not None:
            yield line, MessageError([FieldError("", failure)], line=line, source=source)
            continue
        if not is_batch(value):
            try:
                yield line, validate_message(value, line=line, source=source)
            except MessageError as error:
                yield line, error
            continue
        try:
            items = expand_batch(value, line=line, source=source)
        except MessageError as error:
            yield line, error
            continue
        for index, item in enumerate(items):
            try:
                yield line, validate_message(item, line=line, source=source)
            except MessageError as error:
                yield line, error.prefixed(f"/batch/{index}")
