"""``cdp-tiktok outbox`` and idempotent re-runs of ``send``, against a real loopback sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cdp_tiktok.cli import main
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "events.jsonl"
GOOD = "CGOODPIXEL0000000001"
WRONG = "CWRONGPIXEL000000001"


def _track(n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"m-{n}",
        "userId": f"u-{n}",
        "timestamp": "2030-01-01T00:00:00Z",
        "context": {"page": {"url": "https://shop.example/"}},
        "properties": {"order_id": f"o-{n}", "total": 10 + n, "currency": "EUR"},
    }


def _file(path: Path, count: int) -> str:
    path.write_text("\n".join(json.dumps(_track(n)) for n in range(count)) + "\n")
    return str(path)


def _send(source: str, server: SandboxServer, pixel: str, *extra: str) -> list[str]:
    return [
        "send", source, "--endpoint", server.url, "--access-token", SANDBOX_ACCESS_TOKEN,
        "--pixel-code", pixel, "--outbox", "sqlite:///out.db", "--identity", "memory://", *extra,
    ]  # fmt: skip


def _status(runner: CliRunner) -> dict[str, Any]:
    result = runner.invoke(main, ["outbox", "--outbox", "sqlite:///out.db", "status", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {row["destination"]: row for row in rows}


def test_a_rerun_enqueues_only_what_was_not_sent_and_resend_overrides(
    runner: CliRunner, tmp_path: Path
) -> None:
    source = _file(tmp_path / "in.jsonl", 20)
    with SandboxServer() as server:
        first = runner.invoke(main, _send(source, server, GOOD))
        again = runner.invoke(main, _send(source, server, GOOD))
        forced = runner.invoke(main, _send(source, server, GOOD, "--resend"))
        sent = server.stats().accepted_events
    assert first.exit_code == 0 and again.exit_code == 0 and forced.exit_code == 0, again.output
    assert "skipped" not in first.stdout
    assert re.search(r"skipped: already pending or sent[^│]*│\s*20 │", again.stdout), again.stdout
    assert "skipped" not in forced.stdout
    assert sent == 40  # 20 + 0 + 20


def test_a_stopped_destination_is_explained_and_can_be_purged_or_released(
    runner: CliRunner, tmp_path: Path
) -> None:
    source = _file(tmp_path / "in.jsonl", 5)
    with SandboxServer(allowed_source_ids=[GOOD]) as server:
        wrong = runner.invoke(main, _send(source, server, WRONG))
        assert wrong.exit_code == 1
        row = _status(runner)["TikTok"]
        assert row["stopped"] == 5 and row["pending"] == 0 and row["dead"] == 0
        assert "stopped (permission)" in row["stopped_reason"] and "40001" in row["stopped_reason"]
        assert row["oldest_pending_age_seconds"] >= 0
        table = runner.invoke(main, ["outbox", "--outbox", "sqlite:///out.db", "status"])
        assert "TikTok is stopped" in table.stdout and "outbox release TikTok" in table.stdout
        assert "RETRY_SCHEDULED" in table.stdout

        # a correct run still finds the wrong-pixel events: purge them, then it is clean
        purge = runner.invoke(main, ["outbox", "--outbox", "sqlite:///out.db", "purge", "TikTok"])
        assert purge.exit_code == 1 and "Aborted" in purge.output  # asks first
        purge = runner.invoke(
            main, ["outbox", "--outbox", "sqlite:///out.db", "purge", "TikTok", "--yes"]
        )
        assert "Purged 5 event(s)" in purge.stdout
        assert _status(runner) == {}
        good = runner.invoke(main, _send(_file(tmp_path / "b.jsonl", 3), server, GOOD))
        assert good.exit_code == 0, good.output

        # released after the cause is fixed: drain delivers them without new input
        runner.invoke(main, _send(source, server, WRONG, "--resend"))
        server_ids = server.stats().accepted_events
        assert _status(runner)["TikTok"]["stopped"] == 5
    with SandboxServer() as fixed:  # the pixel now accepts the events
        release = runner.invoke(
            main, ["outbox", "--outbox", "sqlite:///out.db", "release", "TikTok"]
        )
        assert "Released 5 event(s)" in release.stdout
        drain = runner.invoke(
            main,
            [
                "outbox", "--outbox", "sqlite:///out.db", "drain",
                "--endpoint", fixed.url, "--access-token", SANDBOX_ACCESS_TOKEN,
            ],
        )  # fmt: skip
        assert drain.exit_code == 0, drain.output
        assert "delivered 5" in drain.stdout and fixed.stats().accepted_events == 5
    assert server_ids == 3
    assert _status(runner) == {}


def test_sandbox_names_its_files_and_outbox_dlq_act_on_them(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(main, ["send", str(_file(tmp_path / "in.jsonl", 3)), "--sandbox"])
    assert result.exit_code == 0, result.output
    outbox_file = tmp_path / "cdp_tiktok_sandbox_outbox.db"
    assert f"sandbox: outbox {outbox_file}" in result.stderr
    assert str(tmp_path / "cdp_tiktok_sandbox_identity.db") in result.stderr
    status = runner.invoke(main, ["outbox", "--sandbox", "status"])
    assert "cdp_tiktok_sandbox_outbox.db: 3 delivered" in status.stdout
    assert runner.invoke(main, ["dlq", "--sandbox", "list"]).stdout.startswith("No dead letters")
    drain = runner.invoke(main, ["outbox", "--sandbox", "drain"])
    assert drain.exit_code == 0 and "delivered 0" in drain.stdout
    both = runner.invoke(main, ["outbox", "--sandbox", "--outbox", "memory://", "status"])
    assert both.exit_code == 2 and "not both" in both.output


def test_outbox_commands_fail_in_one_sentence(runner: CliRunner) -> None:
    missing = runner.invoke(main, ["outbox", "--outbox", "sqlite:///none.db", "status"])
    assert missing.exit_code == 1 and "no outbox at none.db" in missing.output
    unknown = runner.invoke(main, ["outbox", "--outbox", "kafka://x", "status"])
    assert unknown.exit_code == 2 and "accepted schemes" in unknown.output
    migrate = runner.invoke(main, ["outbox", "--outbox", "sqlite:///new.db", "migrate"])
    assert migrate.exit_code == 0 and "schema version 3" in migrate.stdout
    no_token = runner.invoke(main, ["outbox", "--outbox", "sqlite:///new.db", "drain"])
    assert no_token.exit_code == 2 and "access_token is required" in no_token.output
    assert "Traceback" not in missing.output + unknown.output + no_token.output
