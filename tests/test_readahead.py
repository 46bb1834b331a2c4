"""Reading in a process of its own yields exactly what reading in this one yields.

Real files and real forked processes: each example writes a file, reads it with
``read_ahead`` (a child reads, decodes and validates) and with ``iter_messages``, and
compares every item.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_tiktok.jsonstream import iter_messages
from cdp_tiktok.messages import MessageError
from cdp_tiktok.readahead import BATCH, read_ahead
from cdp_tiktok.testing.strategies import valid_messages


def _outcome(item: tuple[int, Any]) -> tuple[int, str, str]:
    """An item as comparable text: repr tells 1 from 1.0 and True, shows NaN and -0.0."""
    line, value = item
    if isinstance(value, MessageError):
        return line, "error", str(value)
    return line, "message", repr(value)


def _both(path: Path, limit: int = 1_048_576) -> tuple[list[Any], list[Any]]:
    with path.open("rb") as stream:
        ahead = [_outcome(item) for item in read_ahead(stream, str(path), max_message_bytes=limit)]
    with path.open("rb") as stream:
        here = [_outcome(i) for i in iter_messages(stream, str(path), max_message_bytes=limit)]
    return ahead, here


T = "2026-12-01T00:00:00.000Z"  # every message has a time: none is read as "now"


def _message(n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": f"u{n}", "timestamp": T, **extra}


def _timed(message: dict[str, Any]) -> bytes:
    return json.dumps({"timestamp": T, **message}).encode()


# Lines as a backend writes them, and the values orjson would not hand back unchanged.
odd_lines = st.sampled_from(
    [
        b"",
        b"   ",
        b'{"type":"track","event":"X","userId":"u1","properties":{"n":NaN}}',
        b'{"type":"track","event":"X","userId":"u1","properties":{"big":123456789012345678901234}}',
        b'{"type":"track","event":"X","userId":"u1","properties":{"s":"\\ud800"}}',
        b'{"type":"track","event":"X","userId":"u1","properties":{"v":-0.0,"f":1e-7}}',
        b'{"type":"track","event":"X","userId":"u1","properties":{"v":null}}',
        b'{"type":"track","userId":"u1"}',
        b'{"type":"track","event":"X","userId":"u1"',
        b"not json",
        b'{"batch":[{"type":"identify","userId":"u2"},{"type":"nope"}]}',
        b'\xff{"type":"track"}',
        b'{"type":"page","anonymousId":"a1","context":{"page":{"url":"https://x.example/?ttclid=1"}}}',
    ]
).map(lambda line: line.replace(b'"type":', f'"timestamp":"{T}","type":'.encode()))
lines = st.lists(st.one_of(odd_lines, valid_messages().map(_timed)), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines, st.booleans())
def test_read_ahead_yields_what_iter_messages_yields(
    tmp_path_factory: pytest.TempPathFactory, content: list[bytes], final_newline: bool
) -> None:
    path = tmp_path_factory.mktemp("ahead") / "in.jsonl"
    path.write_bytes(b"\n".join(content) + (b"\n" if final_newline else b""))
    ahead, here = _both(path, limit=400)  # some lines over the limit too
    assert ahead == here


def test_many_batches_a_gzip_file_and_an_empty_one_read_alike(tmp_path: Path) -> None:
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps(_message(n)) + "\n" for n in range(3 * BATCH + 7)))
    ahead, here = _both(many)
    assert ahead == here and len(ahead) == 3 * BATCH + 7
    zipped = tmp_path / "in.jsonl.gz"
    zipped.write_bytes(gzip.compress(many.read_bytes())[:-40])  # truncated, too
    ahead, here = _both(zipped)
    assert ahead == here and ahead[-1][1] == "error"
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert _both(empty) == ([], [])


def _readers() -> list[Any]:
    return [p for p in multiprocessing.active_children() if p.name == "cdp-tiktok-read"]


def _wait_gone(timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _readers() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _readers()


def _big_file(path: Path, count: int = 50_000) -> Path:
    # several times what the pipe holds (1 MiB): the child cannot be done before it is killed
    messages = (json.dumps(_message(n, messageId=f"m{n}")) for n in range(count))
    path.write_text("".join(f"{message}\n" for message in messages))
    return path


def test_a_reader_that_stops_early_leaves_no_process(tmp_path: Path) -> None:
    path = _big_file(tmp_path / "big.jsonl")
    with path.open("rb") as stream:
        items = read_ahead(stream, str(path))
        first = [next(items) for _ in range(3)]
        assert len(_readers()) == 1  # a child reads ahead
        items.close()
    assert [line for line, _ in first] == [1, 2, 3]
    assert _wait_gone()


def test_a_killed_reader_is_an_error_naming_the_input(tmp_path: Path) -> None:
    path = _big_file(tmp_path / "big.jsonl")
    with path.open("rb") as stream:
        items = read_ahead(stream, str(path))
        next(items)
        (child,) = _readers()
        os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(OSError, match=r"big\.jsonl: the process reading it ended unexpectedly"):
            for _ in items:  # what it handed over before it died, then the error
                pass
    assert _wait_gone()


def test_a_pipe_is_read_here(tmp_path: Path) -> None:
    # a live stream must be mapped as it arrives: no child batching it
    read_end, write_end = os.pipe()
    os.write(write_end, (json.dumps(_message(1)) + "\n").encode())
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stream:
        items = read_ahead(stream, "<stdin>")
        line, message = next(items)
        assert _readers() == []
        assert (line, message["userId"]) == (1, "u1")
        assert list(items) == []
