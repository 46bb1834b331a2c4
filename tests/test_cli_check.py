"""``cdp-tiktok check``: validate Segment message files."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cdp_tiktok.cli import main

VALID = [
    {"type": "track", "event": "Order Completed", "userId": "u1", "properties": {"revenue": 9}},
    {"type": "identify", "anonymousId": "a1", "traits": {"email": "jane@example.com"}},
    {"type": "page", "userId": 7, "properties": {"url": "https://shop.example.com/?ttclid=x"}},
]
BROKEN_TRACK = '{"type": "track", "userId": "u2", "properties": "jane@example.com"}'
BROKEN_JSON = '{"type": "screen", "anonymousId": "a2",'


def write_mixed(path: Path) -> None:
    lines = [json.dumps(VALID[0]), BROKEN_TRACK, json.dumps(VALID[1]), BROKEN_JSON]
    lines.append(json.dumps(VALID[2]))
    path.write_text("\n".join(lines) + "\n")


def test_three_valid_two_broken_prints_both_with_lines_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_mixed(path)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1, result.output
    assert (
        f"{path}:2: /event: is required on a track message; "
        "/properties: must be an object, got string"
    ) in result.output
    assert f"{path}:4: invalid JSON: " in result.output
    assert "jane@example.com" not in result.output
    summary = result.output[result.output.index("Segment messages") :]
    for row in ("track", "identify", "page"):
        assert row in summary
    assert "invalid" in summary


def test_valid_input_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps(VALID, indent=2))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert ": /" not in result.output
    assert "valid" in result.output


def test_standard_input_and_batch_envelope() -> None:
    envelope = {"batch": VALID, "sentAt": "2024-01-01T00:00:00Z", "writeKey": "k"}
    result = CliRunner().invoke(main, ["check", "-"], input=json.dumps(envelope))
    assert result.exit_code == 0, result.output
    bad = {"batch": [VALID[0], {"type": "alias", "userId": "u"}]}
    result = CliRunner().invoke(main, ["check", "-"], input=json.dumps(bad))
    assert result.exit_code == 1
    assert "<stdin>:1: /batch/1/previousId: is required on an alias message" in result.output


def test_gzip_input(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(json.dumps(m) for m in VALID)).encode()))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "3" in result.output


def test_corrupt_gzip_is_a_located_data_error_after_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n' * 100)[:-12])
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    assert ": cannot read the input: the gzip data is truncated\n" in result.output
    assert "invalid JSON" not in result.output  # the cut line is not reported twice


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2


def test_installed_command_runs_as_a_process(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_mixed(path)
    done = subprocess.run(
        [sys.executable, "-m", "cdp_tiktok", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"{path}:2: /event" in done.stdout
    assert f"{path}:4: invalid JSON" in done.stdout


_IMPORTS = """
import sys
from click.testing import CliRunner
from cdp_tiktok.cli import main
result = CliRunner().invoke(main, ["check", sys.argv[1]])
print(result.exit_code, *(name in sys.modules for name in ("jsonschema", "yaml")))
"""


def test_valid_messages_are_checked_without_importing_jsonschema_or_yaml(tmp_path: Path) -> None:
    # The schema is only asked about a message the fast path cannot prove valid; these
    # imports cost check (and every reader of messages) a third of a small run.
    valid, broken = tmp_path / "valid.jsonl", tmp_path / "broken.jsonl"
    valid.write_text("".join(json.dumps(m) + "\n" for m in VALID))
    broken.write_text(BROKEN_TRACK + "\n")
    run = [sys.executable, "-c", _IMPORTS]
    assert subprocess.check_output([*run, str(valid)], text=True).split() == ["0", "False", "False"]
    assert subprocess.check_output([*run, str(broken)], text=True).split() == ["1", "True", "False"]


def test_the_default_size_limit_is_the_settings_default() -> None:
    from cdp_tiktok.jsonstream import MAX_MESSAGE_BYTES
    from cdp_tiktok.settings import TikTokSettings

    assert TikTokSettings.max_message_bytes == MAX_MESSAGE_BYTES
