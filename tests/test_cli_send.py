"""``cdp-tiktok send``: map, enqueue durably, deliver to a real loopback sandbox."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cdp_tiktok.cli import main
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "events.jsonl"
PIXEL = "CTESTPIXEL0000000001"


def _messages() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EXAMPLES.read_text().splitlines()]


# Example messages that each map to exactly one TikTok event (no opt-out, no unmapped name).
ONE_EVENT_EACH = {"Product Viewed", "Product Added", "Checkout Started", "Order Completed"}


def _one_event_messages() -> list[dict[str, Any]]:
    return [m for m in _messages() if m.get("event") in ONE_EVENT_EACH and "integrations" not in m]


def _send_args(source: str, endpoint: str, token: str, outbox: str) -> list[str]:
    """``send`` arguments for an external sandbox, with an in-memory identity store."""
    return [
        "send", source, "--endpoint", endpoint, "--access-token", token,
        "--pixel-code", PIXEL, "--outbox", outbox, "--identity", "memory://",
    ]  # fmt: skip


def test_readme_main_command_delivers_every_example_event(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(main, ["send", str(EXAMPLES), "--sandbox"])
    assert result.exit_code == 0, result.output
    out = result.output
    produced = int(_row(result.stdout, "TikTok events produced"))
    assert produced > 400
    assert _row(result.stdout, "delivered") == str(produced)
    assert _row(result.stdout, "events recorded by the sandbox") == str(produced)
    assert _row(result.stdout, "dead-lettered") == "0"
    assert "match keys" in out and "external_id" in out
    # the sandbox outbox and identity store hold no raw e-mail address or phone number
    for name in ("cdp_tiktok_sandbox_outbox.db", "cdp_tiktok_sandbox_identity.db"):
        blob = b"".join(p.read_bytes() for p in tmp_path.glob(name + "*"))
        assert blob, name
        assert b"@Example.COM" not in blob and b"@example.com" not in blob
        assert b"373-4253" not in blob and b"2133734253" not in blob


def _row(output: str, label: str) -> str:
    for line in output.splitlines():
        if label in line:
            return line.strip(" │|").split("│")[-1].strip()
    raise AssertionError(f"no row {label!r} in:\n{output}")


def test_dry_run_enqueues_and_sends_nothing(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        main, ["send", str(EXAMPLES), "--dry-run", "--outbox", "sqlite:///dry.db"]
    )
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    assert not (tmp_path / "dry.db").exists()


def test_poison_event_is_dead_lettered_and_listed(runner: CliRunner, tmp_path: Path) -> None:
    messages = _one_event_messages()[:40]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(m) for m in messages))
    poison = messages[7]["messageId"]
    with SandboxServer(poison=[poison]) as sandbox:
        result = runner.invoke(
            main,
            _send_args(str(source), sandbox.url, SANDBOX_ACCESS_TOKEN, "sqlite:///out.db"),
        )
        recorded = {e["data"]["event_id"] for e in sandbox.events()}
    assert result.exit_code == 1, result.output
    assert _row(result.stdout, "dead-lettered") == "1"
    assert poison not in recorded
    assert recorded == {m["messageId"] for m in messages} - {poison}
    listing = runner.invoke(main, ["dlq", "--outbox", "sqlite:///out.db", "list"])
    assert listing.exit_code == 0, listing.output
    lines = [line for line in listing.output.splitlines() if poison in line]
    assert len(lines) == 1 and "40002" in listing.output


def test_wrong_token_stops_keeps_events_and_is_never_printed(
    runner: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(m) for m in _messages()[:30]))
    with SandboxServer() as sandbox:
        result = runner.invoke(
            main,
            _send_args(str(source), sandbox.url, "tok-SECRET-123", "sqlite:///out.db"),
        )
    assert result.exit_code == 1
    assert "tok-SECRET-123" not in result.output
    assert "stopped" in result.output and "TikTok" in result.output
    rows = sqlite3.connect(tmp_path / "out.db").execute("select count(*) from outbox").fetchone()
    assert rows[0] > 0  # events kept for a later run with a valid token
    assert b"tok-SECRET-123" not in b"".join(p.read_bytes() for p in tmp_path.glob("out.db*"))


def test_missing_credentials_is_a_usage_error_naming_the_setting(runner: CliRunner) -> None:
    result = runner.invoke(main, ["send", str(EXAMPLES)])
    assert result.exit_code == 2
    assert "pixel_code" in result.output


def test_invalid_messages_are_reported_with_line_numbers(runner: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    good = json.dumps(_messages()[0])
    source.write_text(f'{good}\n{{"type": "track", "event": "X"}}\nnot json\n')
    result = runner.invoke(main, ["send", str(source), "--sandbox"])
    assert result.exit_code == 1
    assert "in.jsonl:2" in result.output and "in.jsonl:3" in result.output


def test_server_side_web_event_is_sent_without_a_page_unless_a_page_url_is_required(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "server.jsonl"
    message = {
        "type": "track",
        "userId": "u-1",
        "event": "Order Completed",
        "properties": {"order_id": 7, "revenue": 0, "currency": "eur"},
    }
    source.write_text(json.dumps(message) + "\n")
    sent = runner.invoke(main, ["send", str(source), "--sandbox"])
    assert sent.exit_code == 0, sent.output
    assert _row(sent.stdout, "delivered") == "1"
    monkeypatch.setenv("CDP_TIKTOK_REQUIRE_PAGE_URL", "true")
    skipped = runner.invoke(main, ["send", str(source), "--sandbox", "--outbox", "sqlite:///o2.db"])
    assert skipped.exit_code == 0, skipped.output
    assert _row(skipped.stdout, "TikTok events produced") == "0"
    assert "default_page_url" in skipped.output  # the hint says what to do
    monkeypatch.setenv("CDP_TIKTOK_DEFAULT_PAGE_URL", "https://shop.example/")
    again = runner.invoke(main, ["send", str(source), "--sandbox", "--outbox", "sqlite:///o3.db"])
    assert again.exit_code == 0, again.output
    assert _row(again.stdout, "delivered") == "1"


def test_a_live_stream_on_stdin_is_delivered_before_the_input_ends(tmp_path: Path) -> None:
    messages = _one_event_messages()
    first, rest = messages[:20], messages[20:30]
    with SandboxServer() as sandbox, (tmp_path / "stderr.txt").open("wb") as errors:
        process = _live_send(tmp_path, sandbox.url, errors)
        assert process.stdin is not None
        try:
            for message in first:
                process.stdin.write(json.dumps(message).encode() + b"\n")
            process.stdin.flush()
            deadline = time.monotonic() + 30
            while sandbox.stats().accepted_events < len(first) and time.monotonic() < deadline:
                time.sleep(0.05)
            # the input is still open: these were sent while the stream goes on
            assert sandbox.stats().accepted_events == len(first)
            assert process.poll() is None
            for message in rest:
                process.stdin.write(json.dumps(message).encode() + b"\n")
        finally:
            process.stdin.close()
        process.wait(timeout=60)
        recorded = {e["data"]["event_id"] for e in sandbox.events()}
    assert process.returncode == 0, (tmp_path / "stderr.txt").read_text()
    assert recorded == {m["messageId"] for m in first + rest}


def test_the_summary_counts_where_national_phone_regions_came_from(
    runner: CliRunner, tmp_path: Path
) -> None:
    base = {"type": "track", "event": "Order Completed", "properties": {"revenue": 1}}
    messages = [
        {**base, "userId": "u-1", "context": {"traits": {"phone": "(415) 555-2671",
                                                         "address": {"country": "US"}}}},
        {**base, "userId": "u-2", "context": {"locale": "en-US",
                                              "traits": {"phone": "415 555 2672"}}},
        {**base, "userId": "u-3", "context": {"traits": {"phone": "415 555 2673"}}},
    ]  # fmt: skip
    source = tmp_path / "phones.jsonl"
    source.write_text("".join(json.dumps(m) + "\n" for m in messages))
    result = runner.invoke(main, ["send", str(source), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert _row(result.stdout, "context.traits.address.country") == "1"
    assert _row(result.stdout, "context.locale") == "1"
    assert _row(result.stdout, "phone:no_region") == "1"
    assert _row(result.stdout, "phone ") == "67%"  # match-key coverage: 2 of 3 events
    assert "415" not in result.output


# --- delivery in a process of its own ------------------------------------------------------

FAILING_CLASSIFIER = """
from cdp_tiktok.hookspecs import hookimpl


class Plugin:
    @hookimpl(tryfirst=True)
    def cdp_classify_response(self, status_code, body, error, batch_size):
        return 1 / 0


plugin = Plugin()
"""


def test_a_failure_in_the_delivery_process_is_one_error_line(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = tmp_path / "plugins"
    info = plugins / "failing_classifier-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: failing-classifier\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[cdp_tiktok]\nfailing = failing_classifier:plugin\n")
    (plugins / "failing_classifier.py").write_text(FAILING_CLASSIFIER)
    monkeypatch.syspath_prepend(str(plugins))
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(m) for m in _one_event_messages()[:5]))
    result = runner.invoke(main, ["send", str(source), "--sandbox"])
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exit_code == 70, output  # a bug (in a plugin), as the CLI reports bugs
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "unexpected ZeroDivisionError" in errors[0], result.stderr
    stats = sqlite3.connect(tmp_path / "cdp_tiktok_sandbox_outbox.db").execute(
        "SELECT COUNT(*) FROM outbox WHERE state = 'live'"
    )
    assert stats.fetchone()[0] == 5  # every event kept for a later run


def _live_send(tmp_path: Path, sandbox_url: str, errors: Any) -> subprocess.Popen[bytes]:
    """``send -`` in a process group of its own (as a shell runs it), reading a pipe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_TIKTOK_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cdp_tiktok",
            *_send_args("-", sandbox_url, SANDBOX_ACCESS_TOKEN, "sqlite:///live.db"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
    )


def _feed_until_delivered(process: subprocess.Popen[bytes], sandbox: SandboxServer) -> int:
    messages = _one_event_messages()[:20]
    assert process.stdin is not None
    for message in messages:
        process.stdin.write(json.dumps(message).encode() + b"\n")
    process.stdin.flush()
    deadline = time.monotonic() + 30
    while sandbox.stats().accepted_events < len(messages) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox.stats().accepted_events == len(messages)
    return len(messages)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_ctrl_c_stops_both_processes_and_leaves_no_lease(tmp_path: Path) -> None:
    with SandboxServer() as sandbox, (tmp_path / "stderr.txt").open("wb") as errors:
        process = _live_send(tmp_path, sandbox.url, errors)
        try:
            sent = _feed_until_delivered(process, sandbox)
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            assert process.stdin is not None
            process.stdin.close()
    assert process.returncode == 1, (tmp_path / "stderr.txt").read_text()
    assert "Aborted" in (tmp_path / "stderr.txt").read_text()
    with contextlib.closing(sqlite3.connect(tmp_path / "live.db")) as db:
        assert (
            db.execute("SELECT COUNT(*) FROM outbox WHERE lease_owner IS NOT NULL").fetchone()[0]
            == 0
        )
        assert (
            db.execute("SELECT value FROM counters WHERE name = 'delivered'").fetchone()[0] == sent
        )


def test_the_delivery_process_does_not_outlive_a_killed_send(tmp_path: Path) -> None:
    with SandboxServer() as sandbox, (tmp_path / "stderr.txt").open("wb") as errors:
        process = _live_send(tmp_path, sandbox.url, errors)
        try:
            _feed_until_delivered(process, sandbox)
            children = _children(process.pid)
            assert children  # the delivery process (the sandbox here runs in the test)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            deadline = time.monotonic() + 30
            while any(_running(child) for child in children):
                assert time.monotonic() < deadline, "the delivery process outlived send"
                time.sleep(0.05)
        finally:
            if process.poll() is None:
                process.kill()
            assert process.stdin is not None
            process.stdin.close()


def test_send_fails_with_one_error_line_when_its_delivery_process_dies(tmp_path: Path) -> None:
    with SandboxServer() as sandbox, (tmp_path / "stderr.txt").open("wb") as errors:
        process = _live_send(tmp_path, sandbox.url, errors)
        try:
            _feed_until_delivered(process, sandbox)
            (child,) = _children(process.pid)
            os.kill(child, signal.SIGKILL)
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # send may stop reading first
                for message in _one_event_messages()[20:] * 50:
                    process.stdin.write(json.dumps(message).encode() + b"\n")
                    process.stdin.flush()
                    time.sleep(0.01)  # chunks are handed over as they arrive (linger)
                    if process.poll() is not None:
                        break
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 1, stderr
    errors_shown = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert errors_shown == [
        "Error: the delivery process ended without a report (exit status -9); the events "
        "it stored stay in the outbox (cdp-tiktok outbox drain sends them), and running "
        "send again stores the rest (what is stored already is skipped)"
    ], stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("position", "size", "shown"),
    [(120, 480, "120/480 B"), (1500, 48_000, "1/48 kB"), (2_500_000, 70_000_000, "2.5/70.0 MB")],
)
def test_the_reading_bar_names_a_unit_the_file_size_calls_for(
    position: int, size: int, shown: str
) -> None:
    from cdp_tiktok.cli.send import _share

    assert _share(position, size) == shown


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Purchase", "ViewContent", "Search"]),
            st.lists(st.sampled_from(["email", "phone", "external_id", "ip"]), unique=True),
        ),
        max_size=30,
    )
)
def test_the_summary_counts_events_by_name_and_match_key(
    shapes: list[tuple[str, list[str]]],
) -> None:
    from cdp_tiktok.cli.send import IntakeSummary
    from cdp_tiktok.events import BatchKey, OutgoingEvent

    summary = IntakeSummary()
    key = BatchKey("TikTok", "web", "PIXEL", None)
    for name, keys in shapes:
        data: dict[str, Any] = {"event": name, "event_time": 1_735_689_600}
        if keys:
            data["user"] = {k: ["0" * 64] for k in keys}
        summary.count(OutgoingEvent(key, data), 7 * 86400.0, 1_735_689_600.0)
    assert summary.events == len(shapes)
    assert summary.by_event == Counter(name for name, _ in shapes)
    assert summary.key_coverage == Counter(k for _, keys in shapes for k in keys)
