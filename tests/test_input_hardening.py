"""Hostile input never costs a good message (issue 9 points 1, 2, 3, 5).

The reader decides the format once from the start of the input, reads JSON Lines line by
line, replaces lone UTF-16 surrogates, refuses over-long lines without holding them, and
streams gzip (a decompression bomb included) in bounded memory.
"""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cdp_tiktok.cli import main
from cdp_tiktok.jsonstream import Record, iter_messages, iter_records
from cdp_tiktok.messages import MessageError
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN

PIXEL = "CTESTPIXEL0000000001"


def track(n: int, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{n}",
        "messageId": f"m-{n}",
        "timestamp": "2025-01-01T00:00:00Z",
        "properties": {"revenue": 10, "currency": "USD", **properties},
        "context": {"page": {"url": "https://shop.example/done"}},
    }


def line(n: int, **properties: Any) -> str:
    return json.dumps(track(n, **properties))


def records(data: str | bytes, **options: Any) -> list[Record]:
    stream = io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data)
    return list(iter_records(stream, "t", **options))


def good_ids(data: str | bytes) -> list[str]:
    stream = io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data)
    got = iter_messages(stream, "t")
    return [m["messageId"] for _, m in got if not isinstance(m, MessageError)]


# --- 9.1: a truncated line costs nothing but itself -----------------------------------


def test_truncated_line_is_reported_and_the_next_good_line_is_read() -> None:
    text = "\n".join([line(1), '{"type":"track","event":', line(3), line(4)]) + "\n"
    got = records(text)
    assert [(r.line, r.error is None) for r in got] == [(1, True), (2, False), (3, True), (4, True)]
    assert got[1].error is not None and "(line 2, column" in got[1].error
    assert good_ids(text) == ["m-1", "m-3", "m-4"]


def test_truncated_first_line_does_not_make_the_input_one_document() -> None:
    text = "\n".join(['{"type":"track","event":', line(2), line(3)])
    got = records(text)
    assert [r.line for r in got if r.error is not None] == [1]
    assert good_ids(text) == ["m-2", "m-3"]


# --- 9.2: the format is decided once, from the start ----------------------------------


def test_truncated_array_line_in_the_middle_of_json_lines_loses_nothing_after_it() -> None:
    lines = [line(0), '[{"type":"track","event":"Order Completed",']
    lines += [line(n) for n in range(1, 1001)]
    got = list(iter_messages(io.StringIO("\n".join(lines) + "\n"), "in.jsonl"))
    errors = [(n, m) for n, m in got if isinstance(m, MessageError)]
    assert [n for n, _ in errors] == [2]
    assert str(errors[0][1]).startswith("in.jsonl:2: invalid JSON: ")
    ids = [m["messageId"] for _, m in got if not isinstance(m, MessageError)]
    assert ids == [f"m-{n}" for n in range(1001)]


def test_a_whole_array_on_one_json_lines_line_is_one_value_not_a_format_switch() -> None:
    got = records('{"a": 1}\n[{"b": 2}, {"c": 3}]\n{"d": 4}\n')
    assert [(r.line, r.value) for r in got] == [
        (1, {"a": 1}),
        (2, [{"b": 2}, {"c": 3}]),
        (3, {"d": 4}),
    ]


def test_pretty_printed_documents_are_still_one_value_each() -> None:
    text = json.dumps(track(1), indent=2) + "\n" + json.dumps(track(2), indent=2) + "\n"
    assert good_ids(text) == ["m-1", "m-2"]


def test_a_broken_pretty_printed_document_is_reported_once() -> None:
    text = json.dumps(track(1), indent=2)[:-20]
    got = records(text)
    assert len(got) == 1 and got[0].error is not None and got[0].line == 1


def test_data_after_a_top_level_array_is_one_error() -> None:
    got = records('[{"a": 1}]\n{"b": 2}\n{"c": 3}\n')
    assert got[0] == Record(1, {"a": 1})
    assert [r.line for r in got[1:]] == [2]
    assert got[1].error is not None and "after the array" in got[1].error


# --- 9.3: lone surrogates are replaced, everywhere alike ------------------------------


def test_lone_surrogate_escapes_are_replaced_and_pairs_are_kept() -> None:
    text = (
        '{"k\\udc00": "a\\ud800b", "pair": "\\ud83d\\ude00", "list": ["\\uDFFF"]}\n'
        '{"ok": "\\u00e9"}\n'
    )
    got = records(text)
    assert got[0].value == {"k\ufffd": "a\ufffdb", "pair": "\U0001f600", "list": ["\ufffd"]}
    assert got[1].value == {"ok": "é"}
    inside_array = records('[{"name": "x\\ud800"}]')
    assert inside_array[0].value == {"name": "x\ufffd"}


def _surrogate_file(tmp_path: Path) -> Path:
    path = tmp_path / "surrogate.jsonl"
    products = [{"product_id": "p1", "name": "Mug X", "price": 10, "quantity": 1}]
    # a product name cut in the middle of an emoji, as a JavaScript client may send it
    broken = line(2, products=products).replace("Mug X", "Mug \\ud83d")
    path.write_text("\n".join([line(1), broken, line(3)]) + "\n")
    assert "\\ud83d" in path.read_text()
    return path


def test_check_map_and_send_agree_on_a_lone_surrogate(tmp_path: Path) -> None:
    path = _surrogate_file(tmp_path)
    runner = CliRunner()
    checked = runner.invoke(main, ["check", str(path)])
    assert checked.exit_code == 0, checked.output
    mapped = runner.invoke(main, ["map", str(path), "--pixel-code", PIXEL])
    assert mapped.exit_code == 0, mapped.output
    events = [json.loads(x) for x in mapped.stdout.splitlines()]
    assert [e["event_id"] for e in events] == ["m-1", "m-2", "m-3"]
    assert "Mug \ufffd" in json.dumps(events[1], ensure_ascii=False)
    with SandboxServer() as sandbox:
        sent = runner.invoke(
            main,
            [
                "send", str(path), "--endpoint", sandbox.url, "--access-token",
                SANDBOX_ACCESS_TOKEN, "--pixel-code", PIXEL, "--identity", "memory://",
                "--outbox", f"sqlite:///{tmp_path / 'out.db'}",
            ],
        )  # fmt: skip
        assert sent.exit_code == 0, sent.output
        assert "Traceback" not in sent.output
        assert sandbox.stats().accepted_events == 3


# --- 9.5: size limits and compressed input --------------------------------------------


def test_an_over_long_line_is_refused_with_its_line_number_and_the_rest_is_read() -> None:
    long_line = line(2, note="x" * 5000)
    text = "\n".join([line(1), long_line, line(3)]) + "\n"
    got = records(text, max_message_bytes=1000)
    assert [r.line for r in got if r.error is not None] == [2]
    assert got[1].error is not None and "1000 bytes" in got[1].error
    assert [r.value["messageId"] for r in got if r.error is None] == ["m-1", "m-3"]


def test_an_over_long_array_element_is_refused() -> None:
    text = json.dumps([track(1), track(2, note="x" * 5000)])
    got = records(text, max_message_bytes=1000)
    assert got[0].error is None
    assert got[1].error is not None and "1000 bytes" in got[1].error


class Endless:
    """A binary stream of one endless line: reading it all would never end."""

    def __init__(self, limit: int) -> None:
        self.served = 0
        self._limit = limit
        self._head = (line(1) + "\n").encode()

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        if self._head:
            head, self._head = self._head, b""
            return head
        if self.served > self._limit:
            return b""
        if self.served == self._limit:
            self.served += 1
            return b"\n" + (line(2) + "\n").encode()
        self.served = min(self.served + (1 << 16), self._limit)
        return b"y" * (1 << 16)


def test_an_over_long_line_is_never_held_in_memory() -> None:
    stream = Endless(200 << 20)
    tracemalloc.start()
    try:
        got = list(iter_records(stream, "t", max_message_bytes=1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.line for r in got if r.error is not None] == [2]
    assert [r.value["messageId"] for r in got if r.error is None] == ["m-1", "m-2"]
    assert peak < 8 << 20, peak


def _bomb(path: Path, gigabytes: int = 3) -> None:
    """A gzip file of about 3 MB that expands to ``gigabytes`` GB on one line, between two
    good lines (gzip members concatenate, so one compressed MiB is written many times)."""
    member = gzip.compress(b"z" * (1 << 20), 9)
    with path.open("wb") as handle:
        handle.write(gzip.compress((line(1) + "\n").encode()))
        for _ in range(gigabytes * 1024):
            handle.write(member)
        handle.write(gzip.compress(("\n" + line(3) + "\n").encode()))


def test_gzip_is_detected_by_its_bytes_in_every_command(tmp_path: Path) -> None:
    path = tmp_path / "events.data"
    path.write_bytes(gzip.compress(("\n".join([line(1), line(2)]) + "\n").encode()))
    result = CliRunner().invoke(main, ["map", str(path), "--pixel-code", PIXEL])
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["event_id"] for x in result.stdout.splitlines()] == ["m-1", "m-2"]


def test_truncated_gzip_keeps_what_was_read_and_says_where_it_broke(tmp_path: Path) -> None:
    data = gzip.compress(("\n".join(line(n) for n in range(200)) + "\n").encode())
    got = records(data[: len(data) // 2])
    assert sum(1 for r in got if r.error is None) > 50
    assert got[-1].error is not None and "gzip" in got[-1].error


def test_a_gzip_bomb_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    _bomb(path)
    assert path.stat().st_size < 4_000_000
    tracemalloc.start()
    try:
        result = CliRunner().invoke(main, ["check", str(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 1, result.output
    assert f"{path}:2: " in result.output and "longer than" in result.output
    assert peak < 32 << 20, peak
    summary = result.output[result.output.index("Segment messages") :]
    assert "2" in summary.split("valid")[1]


def test_gzip_members_written_back_to_back_are_one_input() -> None:
    data = gzip.compress((line(1) + "\n").encode()) + gzip.compress((line(2) + "\n").encode())
    assert [r.value["messageId"] for r in records(data)] == ["m-1", "m-2"]


def test_the_size_limit_is_configurable_for_check_map_and_send(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([line(1), line(2, note="x" * 3000), line(3)]) + "\n")
    runner = CliRunner()
    checked = runner.invoke(
        main, ["check", str(path)], env={"CDP_TIKTOK_MAX_MESSAGE_BYTES": "2048"}
    )
    assert checked.exit_code == 1
    assert f"{path}:2: longer than 2048 bytes (the message size limit)" in checked.output
    mapped = runner.invoke(main, ["map", str(path), "--max-message-bytes", "2048"])
    assert mapped.exit_code == 1
    assert [json.loads(x)["event_id"] for x in mapped.stdout.splitlines()] == ["m-1", "m-3"]
    assert runner.invoke(main, ["map", str(path)]).exit_code == 0
    sent = runner.invoke(main, ["send", str(path), "--dry-run", "--max-message-bytes", "2048"])
    assert sent.exit_code == 1
    assert f"{path}:2: longer than 2048 bytes" in " ".join(sent.output.split())  # rich wraps
