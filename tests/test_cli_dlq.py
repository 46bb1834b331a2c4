"""``cdp-tiktok dlq`` over a real SQLite outbox whose dead letters come from the Outbox API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdp_tiktok.cli import main
from cdp_tiktok.delivery.sqlite_outbox import SQLiteOutbox
from cdp_tiktok.events import Attempt, BatchKey, OutgoingEvent

KEY = BatchKey("TikTok", "web", "CPIXEL0000000000000A")
EMAIL_HASH = "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514"


def event(event_id: str, name: str, event_time: float) -> OutgoingEvent:
    return OutgoingEvent(
        KEY,
        {
            "event": name,
            "event_id": event_id,
            "event_time": int(event_time),
            "user": {"email": [EMAIL_HASH]},
            "properties": {"value": 42.0, "currency": "USD"},
        },
    )


@pytest.fixture
def dead(tmp_path: Path) -> tuple[str, dict[str, int]]:
    """An outbox file with three dead letters: an old Purchase, a fresh one, a fresh Lead."""
    now = time.time()
    path = tmp_path / "outbox.db"
    box = SQLiteOutbox(path)
    names = {"old-purchase": ("Purchase", now - 5 * 86400), "fresh-purchase": ("Purchase", now)}
    names["fresh-lead"] = ("Lead", now - 3600)
    ids = box.enqueue([event(eid, name, t) for eid, (name, t) in names.items()], now=now - 100)
    box.claim("w", 10, 60, now=now - 100)
    box.mark_retry(
        ids,
        Attempt(now - 90, "retry", 50002, 200, "internal error, retry", "req-first"),
        now - 80,
        worker="w",
    )
    box.claim("w", 10, 60, now=now - 80)
    final = Attempt(now - 70, "dead", 40002, 200, "invalid event_time", "req-second")
    box.mark_dead(ids, final, "payload rejected (40002): invalid event_time", worker="w")
    box.close()
    return f"sqlite:///{path}", dict(zip(names, ids, strict=True))


def run(url: str, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["dlq", "--outbox", url, *args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_event_id_and_reason_on_one_line(dead: tuple[str, dict[str, int]]) -> None:
    url, ids = dead
    code, out, _ = run(url, "list")
    assert code == 0
    for event_id, id_ in ids.items():
        (line,) = [x for x in out.splitlines() if event_id in x]
        assert line.split()[0] == str(id_)
        assert "payload rejected (40002): invalid event_time" in line
        assert "40002" in line
    assert "Lead" in out and "3 dead letter(s)" in out


def test_list_reads_the_outbox_url_from_the_environment(
    dead: tuple[str, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = dead
    monkeypatch.setenv("CDP_TIKTOK_OUTBOX", url)
    result = CliRunner().invoke(main, ["dlq", "list", "--limit", "1"])
    assert result.exit_code == 0
    assert "1 of 3 dead letter(s)" in result.stdout


def test_a_missing_outbox_file_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = run(f"sqlite:///{tmp_path / 'nope.db'}", "list")
    assert code == 1 and "no outbox at" in err
    assert not (tmp_path / "nope.db").exists()


def test_show_prints_the_event_and_every_attempt(dead: tuple[str, dict[str, int]]) -> None:
    url, ids = dead
    code, out, _ = run(url, "show", str(ids["fresh-lead"]))
    assert code == 0
    assert "fresh-lead" in out and EMAIL_HASH in out
    body = out[out.index("Event:\n") + len("Event:\n") : out.index("Attempts (2):")]
    assert json.loads(body)["event"] == "Lead"
    assert "code=50002" in out and "request_id=req-first" in out
    assert "internal error, retry" in out
    assert "code=40002" in out and "request_id=req-second" in out
    assert "invalid event_time" in out

    code, _, err = run(url, "show", "999")
    assert code == 1 and "no dead letter with id 999" in err


def test_replay_warns_only_for_events_older_than_48_hours(
    dead: tuple[str, dict[str, int]],
) -> None:
    url, ids = dead
    code, out, err = run(url, "replay", str(ids["old-purchase"]), str(ids["fresh-purchase"]))
    assert code == 0
    assert "old-purchase" in err and "48 hours" in err
    assert "fresh-purchase" not in err
    assert "Replayed 2 dead letter(s)" in out and "cdp-tiktok send" in out

    box = SQLiteOutbox(Path(url.removeprefix("sqlite:///")))
    assert [d.event_id for d in box.dead_letters()] == ["fresh-lead"]
    records = box.claim("w", 10, 60)
    assert sorted(r.event_id or "" for r in records) == ["fresh-purchase", "old-purchase"]
    assert all(r.attempts == 0 and len(r.history) == 2 for r in records)
    box.close()


def test_replay_all_and_argument_errors(dead: tuple[str, dict[str, int]]) -> None:
    url, ids = dead
    code, _, err = run(url, "replay")
    assert code == 2 and "--all" in err
    code, _, err = run(url, "replay", str(ids["fresh-lead"]), "12345")
    assert code == 1 and "12345" in err and "nothing changed" in err

    code, out, err = run(url, "replay", "--all")
    assert code == 0 and "Replayed 3 dead letter(s)" in out
    assert err.count("warning:") == 1

    _, out, _ = run(url, "list")
    assert "No dead letters." in out


def test_purge_asks_for_confirmation_unless_yes(dead: tuple[str, dict[str, int]]) -> None:
    url, ids = dead
    code, _, _ = run(url, "purge", str(ids["old-purchase"]), input="n\n")
    assert code == 1  # aborted
    assert str(ids["old-purchase"]) in run(url, "list")[1]

    code, out, _ = run(url, "purge", str(ids["old-purchase"]), input="y\n")
    assert code == 0 and "Purged 1 dead letter(s)" in out
    code, out, _ = run(url, "purge", "--all", "--yes")
    assert code == 0 and "Purged 2 dead letter(s)" in out
    assert "No dead letters." in run(url, "list")[1]
