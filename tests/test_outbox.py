"""The outbox contract, checked on every backend: SQLite on a real file, memory, and a real
PostgreSQL database created and dropped per test."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdp_tiktok.backends import open_outbox
from cdp_tiktok.delivery.memory_outbox import MemoryOutbox
from cdp_tiktok.delivery.outbox import EncodedEvent, Outbox, OutboxStats, RecordState
from cdp_tiktok.delivery.postgres_outbox import _KNOWN_IDENTITIES as POSTGRES_KNOWN_IDENTITIES
from cdp_tiktok.delivery.postgres_outbox import ANALYZE_FIRST_AT, PostgresOutbox
from cdp_tiktok.delivery.sqlite_outbox import _KNOWN_IDENTITIES, SCHEMA_VERSION, SQLiteOutbox
from cdp_tiktok.events import Attempt, BatchKey, OutgoingEvent
from cdp_tiktok.hookspecs import hookimpl
from cdp_tiktok.tiktok.payload import encode_event
from tests.pg import fresh_database

WEB = BatchKey("TikTok", "web", "CPIXEL0000000000000A")
TEST = BatchKey("TikTok", "web", "CPIXEL0000000000000A", "TEST123")
REPO = Path(__file__).resolve().parents[1]
T0 = 1_000_000.0


def event(n: int, key: BatchKey = WEB) -> OutgoingEvent:
    """A typed, hashed data[] item with a distinct event_id."""
    return OutgoingEvent(
        key,
        {
            "event": "Purchase",
            "event_id": f"msg-{n}",
            "event_time": 1_735_689_600 + n,
            "user": {"email": ["8" * 64], "ip": "203.0.113.7"},
            "properties": {"value": 12.5, "currency": "EUR", "description": "café ☕"},
        },
    )


def attempt(outcome: str = "retry", code: int | None = 50001, at: float = T0) -> Attempt:
    return Attempt(at, outcome, code, 200, f"{outcome} message", f"req-{outcome}")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """One database for this module's PostgreSQL runs, created and dropped here."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outbox]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        box: Outbox = PostgresOutbox(url)  # creates the schema on first use
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "TRUNCATE cdp_outbox, cdp_outbox_delivered_keys, cdp_outbox_stops RESTART IDENTITY"
            )
            conn.execute("UPDATE cdp_outbox_counters SET value = 0")
        yield box
        box.close()
        return
    box = SQLiteOutbox(tmp_path / "outbox.db") if request.param == "sqlite" else MemoryOutbox()
    yield box
    box.close()


def test_enqueue_then_claim_returns_the_events_in_order(outbox: Outbox) -> None:
    events = [event(n) for n in range(5)]
    ids = outbox.enqueue(events, now=T0)
    assert len(ids) == 5 and ids == sorted(ids) and len(set(ids)) == 5
    assert outbox.stats(now=T0) == OutboxStats(pending=5, leased=0, delivered=0, dead=0, held=0)

    records = outbox.claim("w1", 10, 30, now=T0)

    assert [r.id for r in records] == ids
    assert [r.data for r in records] == [e.data for e in events]
    assert [r.event_id for r in records] == [f"msg-{n}" for n in range(5)]
    assert all(r.key == WEB and r.attempts == 0 and r.history == () for r in records)
    assert all(r.enqueued_at == T0 and isinstance(r.enqueued_at, float) for r in records)
    assert outbox.stats(now=T0).leased == 5


def test_enqueue_of_nothing_and_of_an_unserializable_event(outbox: Outbox) -> None:
    assert outbox.enqueue([]) == []
    bad = OutgoingEvent(WEB, {"event": "Purchase", "value": object()})
    with pytest.raises(TypeError):
        outbox.enqueue([event(1), bad], now=T0)
    assert outbox.stats(now=T0).pending == 0  # all or nothing


def test_a_non_finite_number_fails_at_enqueue(outbox: Outbox) -> None:
    bad = OutgoingEvent(WEB, {"event": "Purchase", "properties": {"value": float("nan")}})
    with pytest.raises(ValueError):
        outbox.enqueue([event(1), bad], now=T0)
    assert outbox.stats(now=T0).pending == 0


def test_records_carry_the_exact_request_bytes_of_their_event(outbox: Outbox) -> None:
    events = [event(n) for n in range(3)]
    outbox.enqueue(events, now=T0)
    records = outbox.claim("w1", 10, 30, now=T0)
    assert [r.data_json.encode() for r in records] == [encode_event(e.data) for e in events]
    first = records[0].data
    first["event"] = "changed"
    assert records[0].data == events[0].data  # every access decodes a fresh copy
    outbox.mark_dead([records[0].id], attempt(), "validation")
    [letter] = outbox.dead_letters()
    assert letter.data_json == records[0].data_json and letter.data == events[0].data


def test_encoded_events_are_stored_as_given_with_their_event_id(outbox: Outbox) -> None:
    text = '{"event":"Purchase","event_id":"msg-9","event_time":1735689600}'
    numeric_id = '{"event":"Purchase","event_id":9}'
    ids = outbox.enqueue(
        [event(1), EncodedEvent(WEB, text), EncodedEvent(TEST, numeric_id)], now=T0
    )
    records = outbox.claim("w1", 10, 30, now=T0)
    assert [r.id for r in records] == ids
    assert [r.data_json for r in records][1:] == [text, numeric_id]
    assert [r.event_id for r in records] == ["msg-1", "msg-9", None]
    assert [r.key for r in records] == [WEB, WEB, TEST]
    assert records[1].data == json.loads(text)


@pytest.mark.parametrize(
    "text", ['{"value":NaN}', "[1]", '"text"', '{"a":1} {"b":2}', '1},{"b":2', "", '{"a":1,}']
)
def test_an_encoded_event_that_is_not_one_json_object_fails_the_enqueue(
    outbox: Outbox, text: str
) -> None:
    with pytest.raises(ValueError):
        outbox.enqueue([event(1), EncodedEvent(WEB, '{"ok":1}'), EncodedEvent(WEB, text)])
    assert outbox.stats(now=T0).pending == 0


def test_claim_respects_limit_key_and_readiness(outbox: Outbox) -> None:
    web = outbox.enqueue([event(n) for n in range(3)], now=T0)
    test = outbox.enqueue([event(n, TEST) for n in range(3, 5)], now=T0 + 1)
    assert outbox.claim("w", 5, 30, now=T0 - 1) == []  # nothing ready before enqueue time
    assert outbox.ready_keys(now=T0) == [WEB]
    assert outbox.ready_keys(now=T0 + 1) == [WEB, TEST]

    first = outbox.claim("w", 2, 30, key=TEST, now=T0 + 1)
    assert [r.id for r in first] == test
    second = outbox.claim("w", 2, 30, now=T0 + 1)
    assert [r.id for r in second] == web[:2]
    assert outbox.ready_keys(now=T0 + 1) == [WEB]
    assert outbox.claim("w", 0, 30, now=T0 + 1) == []


def test_a_live_lease_excludes_other_workers_until_it_expires(outbox: Outbox) -> None:
    ids = outbox.enqueue([event(n) for n in range(3)], now=T0)
    assert len(outbox.claim("w1", 10, 30, now=T0)) == 3
    assert outbox.claim("w2", 10, 30, now=T0 + 29.9) == []
    assert outbox.next_ready_at() == T0 + 30
    assert outbox.stats(now=T0 + 29.9).leased == 3
    assert outbox.stats(now=T0 + 30).pending == 3  # expired: claimable again

    again = outbox.claim("w2", 10, 30, now=T0 + 30)

    assert [r.id for r in again] == ids
    assert all(r.attempts == 0 for r in again)  # an expired lease is not an attempt


def test_settles_are_guarded_by_the_worker_holding_the_lease(outbox: Outbox) -> None:
    ids = outbox.enqueue([event(n) for n in range(4)], now=T0)
    outbox.claim("w1", 10, 30, now=T0)
    outbox.claim("w2", 10, 30, now=T0 + 31)  # w1's lease expired; w2 holds them now

    assert outbox.mark_delivered(ids, attempt("delivered"), worker="w1") == 0
    assert outbox.mark_retry(ids, attempt(), T0 + 100, worker="w1") == 0
    assert outbox.mark_dead(ids, attempt("dead"), "late", worker="w1") == 0
    assert outbox.release(ids, worker="w1") == 0
    assert outbox.stats(now=T0 + 31).leased == 4

    assert outbox.mark_delivered(ids[:2], attempt("delivered"), worker="w2") == 2
    assert outbox.mark_delivered(ids[:2], attempt("delivered"), worker="w2") == 0  # gone
    assert outbox.stats(now=T0 + 31) == OutboxStats(
        pending=0, leased=2, delivered=2, dead=0, held=0
    )


def test_an_expired_lease_not_yet_reclaimed_can_still_be_settled(outbox: Outbox) -> None:
    ids = outbox.enqueue([event(1)], now=T0)
    outbox.claim("w1", 10, 30, now=T0)
    assert outbox.mark_delivered(ids, attempt("delivered"), worker="w1") == 1


def test_retry_counts_the_attempt_and_waits_until_not_before(outbox: Outbox) -> None:
    ids = outbox.enqueue([event(1), event(2)], now=T0)
    outbox.claim("w", 10, 30, now=T0)
    first = attempt("retry", 50001, at=T0 + 1)

    assert outbox.mark_retry(ids, first, T0 + 60, worker="w") == 2

    assert outbox.stats(now=T0 + 1) == OutboxStats(pending=2, leased=0, delivered=0, dead=0, held=2)
    assert outbox.next_ready_at() == T0 + 60
    assert outbox.claim("w", 10, 30, now=T0 + 59) == []
    records = outbox.claim("w", 10, 30, now=T0 + 60)
    assert [r.attempts for r in records] == [1, 1]
    assert all(r.history == (first,) for r in records)

    second = attempt("throttled", 40100, at=T0 + 61)
    outbox.mark_retry(ids, second, T0 + 120, worker="w")
    records = outbox.claim("w", 10, 30, now=T0 + 120)
    assert all(r.attempts == 2 and r.history == (first, second) for r in records)


def test_release_gives_back_without_counting_an_attempt(outbox: Outbox) -> None:
    ids = outbox.enqueue([event(1)], now=T0)
    outbox.claim("w", 10, 30, now=T0)
    outbox.mark_retry(ids, attempt(), T0 + 10, worker="w")
    outbox.claim("w", 10, 30, now=T0 + 10)

    assert outbox.release(ids, worker="w") == 1
    assert outbox.release(ids) == 0  # no longer leased

    (record,) = outbox.claim("other", 10, 30, now=T0 + 10)  # ready at once, not at T0 + 40
    assert record.attempts == 1


def test_claim_prefers_records_ready_longest(outbox: Outbox) -> None:
    old, new = outbox.enqueue([event(1)], now=T0), outbox.enqueue([event(2)], now=T0 + 5)
    outbox.claim("w", 10, 30, now=T0 + 5)
    outbox.mark_retry(old, attempt(), T0 + 50, worker="w")
    outbox.mark_retry(new, attempt(), T0 + 40, worker="w")

    assert [r.id for r in outbox.claim("w", 1, 30, now=T0 + 60)] == new


def test_dead_letters_keep_event_reason_and_every_attempt(outbox: Outbox) -> None:
    ids = outbox.enqueue([event(1), event(2), event(3)], now=T0)
    outbox.claim("w", 10, 30, now=T0)
    retry = attempt("retry", 50001, at=T0 + 1)
    outbox.mark_retry(ids, retry, T0 + 2, worker="w")
    outbox.claim("w", 10, 30, now=T0 + 2)
    fatal = attempt("dead", 40002, at=T0 + 3)

    assert outbox.mark_dead(ids[:2], fatal, "invalid payload: event_time", worker="w") == 2

    letters = list(outbox.dead_letters())
    assert [d.id for d in letters] == ids[:2]
    letter = outbox.get_dead_letter(ids[0])
    assert letter is not None and letter == letters[0]
    assert letter.data == event(1).data and letter.event_id == "msg-1" and letter.key == WEB
    assert letter.reason == "invalid payload: event_time"
    assert letter.history == (retry, fatal)
    assert letter.enqueued_at == T0 and letter.dead_at == T0 + 3
    assert outbox.get_dead_letter(ids[2]) is None  # still leased, not dead
    assert len(list(outbox.dead_letters(limit=1))) == 1
    assert outbox.stats(now=T0 + 3) == OutboxStats(pending=0, leased=1, delivered=0, dead=2, held=0)


def test_mark_dead_without_an_attempt_and_without_a_worker(outbox: Outbox) -> None:
    ids = outbox.enqueue([event(1)], now=T0)
    assert outbox.mark_dead(ids, None, "dropped by operator") == 1  # pending, unleased
    (letter,) = outbox.dead_letters()
    assert letter.history == () and letter.reason == "dropped by operator"
    assert outbox.mark_dead(ids, None, "again") == 0  # already dead


def test_replay_moves_dead_letters_back_with_history_and_purge_deletes(outbox: Outbox) -> None:
    ids = outbox.enqueue([event(n) for n in range(4)], now=T0)
    outbox.claim("w", 10, 30, now=T0)
    fatal = attempt("dead", 40002, at=T0 + 1)
    outbox.mark_dead(ids, fatal, "bad", worker="w")

    assert outbox.replay([ids[0], 999_999], now=T0 + 10) == 1
    assert outbox.replay([ids[0]], now=T0 + 10) == 0  # no longer dead
    (record,) = outbox.claim("w", 10, 30, now=T0 + 10)
    assert record.id == ids[0] and record.attempts == 0 and record.history == (fatal,)

    assert outbox.purge([ids[1]]) == 1
    assert outbox.get_dead_letter(ids[1]) is None
    assert outbox.purge([ids[0]]) == 0  # purge only deletes dead letters
    assert outbox.replay(now=T0 + 20) == 2
    outbox.claim("w", 10, 30, now=T0 + 20)
    outbox.mark_dead(ids[2:], None, "bad again")
    assert outbox.purge() == 2
    assert outbox.stats(now=T0 + 20) == OutboxStats(
        pending=0, leased=1, delivered=0, dead=0, held=0
    )


def test_delivered_is_counted_while_delivered_rows_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = SQLiteOutbox(path)
    ids = box.enqueue([event(n) for n in range(50)], now=T0)
    box.claim("w", 50, 30, now=T0)
    box.mark_delivered(ids, attempt("delivered"), worker="w")
    box.close()

    reopened = SQLiteOutbox(path)
    assert reopened.stats(now=T0).delivered == 50
    assert reopened.next_ready_at() is None
    (rows,) = reopened._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
    assert rows == 0
    reopened.close()


def test_data_is_stored_as_compact_json_with_key_columns(tmp_path: Path) -> None:
    box = SQLiteOutbox(tmp_path / "outbox.db")
    box.enqueue([event(1, TEST)], now=T0)
    row = box._conn.execute(
        "SELECT d.data, destination, event_source_id, test_event_code, event_id FROM outbox"
        " JOIN outbox_data AS d USING (id)"
    ).fetchone()
    assert row[0] == json.dumps(event(1).data, separators=(",", ":"), ensure_ascii=False)
    assert row[1:] == ("TikTok", "CPIXEL0000000000000A", "TEST123", "msg-1")
    box.close()


def test_open_outbox_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_outbox("sqlite:///sub/rel.db")
    absolute = open_outbox(f"sqlite:///{tmp_path / 'abs.db'}")  # sqlite:////abs form
    memory = open_outbox("memory://")
    assert isinstance(relative, SQLiteOutbox) and (tmp_path / "sub" / "rel.db").exists()
    assert isinstance(absolute, SQLiteOutbox) and (tmp_path / "abs.db").exists()
    assert isinstance(memory, MemoryOutbox)
    for box in (relative, absolute, memory):
        box.close()

    for url in ("redis://localhost", "outbox.db"):
        with pytest.raises(ValueError) as info:
            open_outbox(url)
        assert repr(url) in str(info.value) and "memory://, " in str(info.value)
    for url in ("sqlite://", "sqlite:///"):
        with pytest.raises(ValueError, match="sqlite:////absolute") as info:
            open_outbox(url)
        assert repr(url) in str(info.value)


class KafkaPlugin:
    """A third-party backend: registers a scheme, knows nothing of ours."""

    opened: list[str] = []

    @hookimpl
    def cdp_register_outbox_backends(self, register: Any) -> None:
        def factory(url: str) -> Outbox:
            self.opened.append(url)
            return MemoryOutbox()

        register("kafka", factory)


def test_a_plugin_registers_an_outbox_backend_by_scheme() -> None:
    box = open_outbox("kafka://broker/topic", plugins=[KafkaPlugin()])
    assert KafkaPlugin.opened == ["kafka://broker/topic"] and isinstance(box, MemoryOutbox)
    with pytest.raises(ValueError, match="kafka://"):
        open_outbox("kafka://broker/topic")  # not registered without the plugin


class SqliteAgain:
    @hookimpl
    def cdp_register_outbox_backends(self, register: Any) -> None:
        register("SQLite", lambda url: MemoryOutbox())


def test_a_scheme_registered_twice_names_both_plugins() -> None:
    with pytest.raises(ValueError, match=r"'sqlite' registered by both .*sqlite_outbox"):
        open_outbox("sqlite:///x.db", plugins=[SqliteAgain()])


def test_the_interface_module_imports_no_backend() -> None:
    source = (REPO / "cdp_tiktok" / "delivery" / "outbox.py").read_text(encoding="utf-8")
    assert "_outbox import" not in source and "backends" not in source.split('"""')[2]


def _run(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


CLAIMER = """
    import sys
    from cdp_tiktok.delivery.sqlite_outbox import SQLiteOutbox
    box = SQLiteOutbox(sys.argv[1])
    while records := box.claim(sys.argv[2], 7, 600):
        print(*(r.id for r in records), flush=True)
    box.close()
"""


def test_processes_sharing_one_file_never_claim_the_same_record(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    box = SQLiteOutbox(path)
    ids = box.enqueue([event(n) for n in range(600)])
    box.close()

    workers = [_run(CLAIMER, str(path), f"w{n}") for n in range(3)]
    claimed: list[int] = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        claimed += [int(i) for i in out.split()]

    assert sorted(claimed) == ids  # every record claimed exactly once


def test_two_outbox_objects_in_one_process_never_claim_the_same_record(tmp_path: Path) -> None:
    one, two = SQLiteOutbox(tmp_path / "o.db"), SQLiteOutbox(tmp_path / "o.db")
    ids = one.enqueue([event(n) for n in range(20)], now=T0)
    first = one.claim("w1", 12, 30, now=T0)
    second = two.claim("w2", 12, 30, now=T0)
    assert {r.id for r in first}.isdisjoint(r.id for r in second)
    assert sorted(r.id for r in first + second) == ids
    assert two.mark_delivered([r.id for r in first], attempt("delivered"), worker="w2") == 0
    one.close()
    two.close()


ENQUEUER = """
    import sys
    from cdp_tiktok.delivery.sqlite_outbox import SQLiteOutbox
    from cdp_tiktok.events import BatchKey, OutgoingEvent
    box = SQLiteOutbox(sys.argv[1])
    key = BatchKey("TikTok", "web", "CPIXEL0000000000000A")
    batch = 0
    while True:
        events = [
            OutgoingEvent(key, {"event": "Purchase", "event_id": f"b{batch}-{n}"})
            for n in range(200)
        ]
        ids = box.enqueue(events)
        print("acked", batch, ids[0], ids[-1], flush=True)
        batch += 1
"""


def test_an_acknowledged_enqueue_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    child = _run(ENQUEUER, str(path))
    assert child.stdout is not None
    acked: list[tuple[int, int, int]] = []
    for line in child.stdout:
        word, batch, first, last = line.split()
        assert word == "acked"
        acked.append((int(batch), int(first), int(last)))
        if len(acked) == 15:
            # Killed while it is (most likely) in the middle of the next enqueue.
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=30)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    box = SQLiteOutbox(path)
    records = {r.id: r for r in box.claim("checker", 1_000_000, 60)}
    for number, first_id, last_id in acked:
        for offset, id_ in enumerate(range(first_id, last_id + 1)):
            assert records[id_].event_id == f"b{number}-{offset}"
    # An unacknowledged batch is either entirely there or entirely absent.
    assert (len(records) - 200 * len(acked)) in (0, 200)
    box.close()


# --- idempotent enqueue, per-destination status, stops -------------------------------


def test_idempotent_enqueue_skips_live_and_recently_delivered_events(outbox: Outbox) -> None:
    window = 48 * 3600.0
    first = outbox.enqueue([event(1), event(2), event(2)], now=T0, dedup_seconds=window)
    assert len(first) == 2  # the repeat within one enqueue is skipped too
    assert outbox.enqueue([event(1), event(2)], now=T0, dedup_seconds=window) == []
    one, _ = outbox.claim("w", 10, 30, now=T0)
    outbox.mark_delivered([one.id], attempt("delivered", 0, at=T0), worker="w")
    # delivered within the window: still skipped; a new event goes in
    assert len(outbox.enqueue([event(1), event(3)], now=T0 + 10, dedup_seconds=window)) == 1
    # after the window, the delivered one may be sent again; the leased one never
    later = T0 + window + 20
    assert len(outbox.enqueue([event(1), event(2)], now=later, dedup_seconds=window)) == 1
    # without dedup (--resend) everything goes in
    assert len(outbox.enqueue([event(1), event(2)], now=later)) == 2


def test_idempotent_enqueue_looks_identities_up_by_their_index(tmp_path: Path) -> None:
    # By the state index SQLite would scan every live row once per chunk: a backfill's
    # enqueue would grow with the square of its size.
    box = SQLiteOutbox(tmp_path / "o.db")
    box.enqueue([event(n) for n in range(2000)], now=T0, dedup_seconds=3600.0)
    with sqlite3.connect(tmp_path / "o.db") as db:
        plan = [row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + _KNOWN_IDENTITIES,
                                                {"ids": "[]", "since": 0.0})]  # fmt: skip
    box.close()
    assert "SEARCH outbox USING INDEX outbox_dedup (dedup=?)" in plan, plan
    assert not any("outbox_state_next" in step for step in plan), plan


def test_postgres_enqueue_keeps_the_planner_statistics_fresh() -> None:
    # On statistics of a smaller table (autovacuum lags a backfill by a minute or more)
    # PostgreSQL looks identities up by the state index, scanning every live row per
    # chunk; the enqueuing connection analyzes the tables as they grow.
    with fresh_database() as url:
        box = PostgresOutbox(url)
        for chunk in range(12):
            events = [event(chunk * 1000 + n) for n in range(1000)]
            box.enqueue(events, now=T0, dedup_seconds=3600.0)
        with psycopg.connect(url) as db:
            analyzed = db.execute(
                "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL"
            ).fetchall()
            ids = [f"TikTok\x1fCPIXEL\x1fPurchase\x1fe-{n}" for n in range(1000)]
            plan = [
                row[0][:60]
                for row in db.execute(
                    "EXPLAIN " + POSTGRES_KNOWN_IDENTITIES, {"ids": ids, "since": T0}
                )
            ]
        box.close()
    assert {"cdp_outbox", "cdp_outbox_delivered_keys"} <= {name for (name,) in analyzed}
    assert not any("cdp_outbox_ready" in step for step in plan), plan


def test_postgres_enqueue_succeeds_when_its_analyze_cannot(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Another session holds the lock ANALYZE needs (inserts do not); with a short
    # lock_timeout the ANALYZE fails, and the committed enqueue must not.
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=200")
    with fresh_database() as url:
        box = PostgresOutbox(url)
        with psycopg.connect(url) as holder:
            holder.execute("LOCK TABLE cdp_outbox IN SHARE UPDATE EXCLUSIVE MODE")
            with caplog.at_level("WARNING", logger="cdp_tiktok.delivery.postgres_outbox"):
                ids = box.enqueue([event(n) for n in range(ANALYZE_FIRST_AT)], now=T0)
            holder.rollback()
        assert len(ids) == ANALYZE_FIRST_AT
        assert box.stats().pending == ANALYZE_FIRST_AT
        assert "ANALYZE failed (LockNotAvailable); enqueue unaffected" in caplog.text
        box.close()


def test_idempotent_enqueue_compares_name_pixel_and_event_id(outbox: Outbox) -> None:
    other_pixel = BatchKey("TikTok", "web", "CPIXEL_OTHER")
    renamed = OutgoingEvent(WEB, {**event(1).data, "event": "AddToCart"})
    no_id = OutgoingEvent(WEB, {"event": "Purchase", "event_time": 1})
    window = 3600.0
    outbox.enqueue([event(1), no_id], now=T0, dedup_seconds=window)
    ids = outbox.enqueue(
        [event(1, other_pixel), renamed, no_id, event(1)], now=T0, dedup_seconds=window
    )
    assert len(ids) == 3  # only the exact repeat of event(1) is skipped
    encoded = EncodedEvent(WEB, encode_event(event(1).data).decode())
    assert outbox.enqueue([encoded], now=T0, dedup_seconds=window) == []


def test_status_counts_every_state_per_destination(outbox: Outbox) -> None:
    leads = BatchKey("Leads", "crm", "SET1")
    outbox.enqueue([event(n) for n in range(5)], now=T0)
    outbox.enqueue([event(9, leads)], now=T0 - 5)
    claimed = outbox.claim("w", 3, 30, key=WEB, now=T0)
    outbox.mark_retry([claimed[0].id], attempt(at=T0), T0 + 100, worker="w")
    outbox.mark_dead([claimed[1].id], attempt("dead", 40002, at=T0), "bad_event", worker="w")
    rows = {row.destination: row for row in outbox.status(now=T0 + 1)}
    tiktok = rows["TikTok"].counts
    assert tiktok == {
        RecordState.PENDING: 2,
        RecordState.RETRY_SCHEDULED: 1,
        RecordState.LEASED: 1,
        RecordState.STOPPED: 0,
        RecordState.DEAD: 1,
    }
    assert rows["TikTok"].oldest_enqueued_at == T0 and rows["TikTok"].stopped_reason is None
    assert rows["Leads"].counts[RecordState.PENDING] == 1
    assert rows["Leads"].oldest_enqueued_at == T0 - 5
    # an expired lease counts as pending again
    assert outbox.status(now=T0 + 31)[1].counts[RecordState.LEASED] == 0


def test_a_stopped_destination_is_shown_then_released_or_purged(outbox: Outbox) -> None:
    outbox.enqueue([event(n) for n in range(4)], now=T0)
    held = outbox.claim("w", 1, 30, now=T0)
    outbox.stop_destination("TikTok", "destination 'TikTok' stopped (auth)", now=T0)
    [row] = outbox.status(now=T0)
    assert row.stopped_reason == "destination 'TikTok' stopped (auth)" and row.stopped_at == T0
    assert row.counts[RecordState.STOPPED] == 3 and row.counts[RecordState.LEASED] == 1

    assert outbox.release_destination("TikTok", now=T0 + 1) == 3  # the leased one untouched
    [row] = outbox.status(now=T0 + 1)
    assert row.stopped_reason is None and row.counts[RecordState.PENDING] == 3

    outbox.stop_destination("TikTok", "again", now=T0 + 2)
    assert outbox.purge_destination("TikTok", now=T0 + 2) == 3
    [row] = outbox.status(now=T0 + 2)
    assert row.stopped_reason is None and row.counts[RecordState.LEASED] == 1
    assert [r.id for r in outbox.claim("w2", 10, 30, now=T0 + 40)] == [held[0].id]
    outbox.stop_destination("TikTok", None)
    assert outbox.status(now=T0 + 40)[0].stopped_reason is None


def test_by_state_uses_the_record_state_names(outbox: Outbox) -> None:
    outbox.enqueue([event(1), event(2)], now=T0)
    [one] = outbox.claim("w", 1, 30, now=T0)
    outbox.mark_retry([one.id], attempt(at=T0), T0 + 50, worker="w")
    states = outbox.stats(now=T0).by_state()
    assert states == {
        RecordState.PENDING: 1,
        RecordState.RETRY_SCHEDULED: 1,
        RecordState.LEASED: 0,
        RecordState.DEAD: 0,
        RecordState.DELIVERED: 0,
    }
    assert {str(s) for s in RecordState} >= {"pending", "retry_scheduled", "stopped"}


def _older_file(path: Path, version: int) -> None:
    """Turn a current SQLite outbox file into one of an older schema ``version``, as older
    releases wrote it."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE outbox SET data = (SELECT data FROM outbox_data WHERE id = outbox.id)")
        conn.execute("DROP TRIGGER outbox_data_gone")
        conn.execute("DROP TABLE outbox_data")
        if version < 2:
            conn.execute("DROP TABLE delivered_keys")
            conn.execute("DROP TABLE stops")
            conn.execute("DROP INDEX outbox_dedup")
            conn.execute("ALTER TABLE outbox DROP COLUMN dedup")
        conn.execute(f"PRAGMA user_version = {version}")


def test_a_version_1_sqlite_file_is_migrated_keeping_its_records(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    box = SQLiteOutbox(path)
    box.enqueue([event(1)], now=T0)
    box.close()
    _older_file(path, 1)
    box = SQLiteOutbox(path)
    assert box.schema_version == SCHEMA_VERSION == 3
    [record] = box.claim("w", 10, 30, now=T0)
    assert (record.event_id, record.data) == ("msg-1", event(1).data)
    assert box.enqueue([event(2)], now=T0, dedup_seconds=60) != []
    box.close()


def test_a_version_2_sqlite_file_is_migrated_moving_the_event_text(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    box = SQLiteOutbox(path)
    ids = box.enqueue([event(n) for n in range(4)], now=T0, dedup_seconds=60)
    box.claim("w", 2, 30, now=T0)
    box.mark_dead([ids[0]], attempt(), "validation", worker="w")
    box.close()
    _older_file(path, 2)
    box = SQLiteOutbox(path)
    assert box.schema_version == 3
    texts = box._conn.execute("SELECT COUNT(*) FROM outbox WHERE data != ''").fetchone()
    assert texts == (0,)  # the text moved; the narrow rows are what leases rewrite
    [letter] = box.dead_letters()
    assert letter.data == event(0).data and letter.reason == "validation"
    assert box.get_dead_letter(ids[0]) == letter
    claimed = box.claim("w2", 10, 30, now=T0 + 60)  # w's lease on ids[1] expired
    assert [r.data for r in claimed] == [event(n).data for n in (1, 2, 3)]
    assert box.enqueue([event(3)], now=T0 + 60, dedup_seconds=600) == []  # still known
    box.mark_delivered([r.id for r in claimed], attempt("delivered"), worker="w2")
    box.purge()
    left = box._conn.execute("SELECT COUNT(*) FROM outbox_data").fetchone()
    assert left == (0,)  # a record's text goes with it, however it is deleted
    box.close()
