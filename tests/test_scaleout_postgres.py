"""Workers on one PostgreSQL outbox under faults: SIGKILL of a worker, terminated sessions."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psycopg

from cdp_tiktok.delivery.postgres_outbox import PostgresOutbox
from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.sandbox.server import SandboxServer
from tests.pg import fresh_database
from tests.workers import until, worker_process

KEY = BatchKey("TikTok", "web", "CSCALEPIXEL000000001")
EVENTS = 600
POISON = {"p-17", "p-333"}
DEADLINE = 90.0
WORKER_OPTIONS = ("--concurrency", "2", "--lease-seconds", "3")


def _event(n: int) -> OutgoingEvent:
    event_id = f"p-{n}"
    return OutgoingEvent(
        KEY,
        {
            "event": "Purchase",
            "event_id": event_id,
            "event_time": int(time.time()),
            "user": {"email": ["b" * 64], "external_id": ["c" * 64]},
            "page": {"url": "https://shop.example/"},
            "properties": {"value": n, "currency": "EUR"},
        },
    )


def test_three_workers_survive_sigkill_faults_and_terminated_sessions(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    # short backoff, so faults retry within the test's time; never exhausted
    settings.write_text("batch_max_events: 20\ntimeout_seconds: 2\nmax_attempts: 40\n")
    with fresh_database() as url:
        box = PostgresOutbox(url)
        box.enqueue([_event(n) for n in range(EVENTS)])
        with SandboxServer(
            throttle_rate=0.2, error_rate=0.1, poison=POISON, seed=7, latency_ms=20
        ) as sandbox:
            workers = [
                worker_process(
                    url, sandbox.url, settings, *WORKER_OPTIONS, stderr=subprocess.DEVNULL
                )
                for _ in range(3)
            ]
            try:
                until(lambda: sandbox.stats().accepted_events >= 100, "first deliveries")
                workers[0].kill()  # SIGKILL mid-stream: its leases expire, others take them
                workers[0].wait(timeout=DEADLINE)
                until(lambda: sandbox.stats().accepted_events >= 250, "more deliveries")
                with psycopg.connect(url, autocommit=True) as admin:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = 'cdp_tiktok' AND datname = current_database()"
                        " AND pid <> pg_backend_pid()"
                    )
                until(
                    lambda: box.stats().delivered + box.stats().dead >= EVENTS,
                    "every event settled",
                )
                for process in workers[1:]:
                    process.send_signal(signal.SIGTERM)
                    assert process.wait(timeout=DEADLINE) == 0
            finally:
                for process in workers:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
            events = sandbox.events()
        delivered_ids = {e["data"]["event_id"] for e in events}
        assert delivered_ids == {f"p-{n}" for n in range(EVENTS)} - POISON
        # a repeat (a killed worker's batch sent again) carries the same event_id
        assert all(e["data"]["event_id"].startswith("p-") for e in events)
        letters = list(box.dead_letters())
        assert {d.event_id for d in letters} == POISON  # nothing else dead-lettered
        stats = box.stats()
        assert stats.delivered == EVENTS - len(POISON) and stats.pending == stats.leased == 0
        box.close()


def test_no_raw_identifier_reaches_any_postgresql_table(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from cdp_tiktok.cli import main

    message = {
        "type": "track",
        "event": "Order Completed",
        "messageId": "raw-1",
        "userId": "user-SECRET-42",
        "timestamp": "2030-01-01T00:00:00Z",
        "context": {
            "page": {"url": "https://shop.example/"},
            "traits": {"email": "Scale.Person@Example.com", "phone": "+1 213 373 4253"},
        },
        "properties": {"order_id": "o-1", "total": 5, "currency": "EUR"},
    }
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(message) + "\n")
    with fresh_database() as url, SandboxServer() as sandbox:
        result = CliRunner().invoke(
            main,
            [
                "send", str(source), "--outbox", url, "--identity", "memory://",
                "--endpoint", sandbox.url, "--access-token", "wrong-token",
                "--pixel-code", "CRAWPIXEL00000000001",
            ],
        )  # fmt: skip
        assert result.exit_code == 1 and "stopped" in result.output  # rows stay in the table
        status = CliRunner().invoke(main, ["outbox", "--outbox", url, "status", "--json"])
        row = json.loads(status.stdout)
        assert row["stopped"] == 1 and "stopped (auth)" in row["stopped_reason"]
        migrate = CliRunner().invoke(main, ["outbox", "--outbox", url, "migrate"])
        assert migrate.exit_code == 0 and "schema version 1" in migrate.stdout
        with psycopg.connect(url) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ]
            dump = "".join(
                str(conn.execute(f'SELECT * FROM "{table}"').fetchall()) for table in tables
            ).lower()
    assert "cdp_outbox" in tables and "raw-1" in dump  # the event is there...
    for raw in ("scale.person@example.com", "2133734253", "373 4253", "user-secret-42"):
        assert raw not in dump  # ...but only hashed
    assert "wrong-token" not in dump


def test_an_outbox_call_reconnects_after_its_session_is_terminated() -> None:
    with fresh_database() as url:
        box = PostgresOutbox(url)
        box.enqueue([_event(n) for n in range(3)])
        with psycopg.connect(url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'cdp_tiktok' AND datname = current_database()"
            ).fetchone()
        assert killed == (1,)
        assert box.stats().pending == 3  # reconnected, nothing lost
        assert len(box.enqueue([_event(9)])) == 1
        box.close()


def test_the_outbox_url_setting_comes_from_the_environment() -> None:
    from click.testing import CliRunner

    from cdp_tiktok.cli import main

    with fresh_database() as url:
        box = PostgresOutbox(url)
        box.enqueue([_event(1)])
        box.close()
        result = CliRunner().invoke(
            main, ["outbox", "status", "--json"], env={"CDP_TIKTOK_OUTBOX": url}
        )
    assert result.exit_code == 0, result.output
    assert '"pending": 1' in result.stdout and '"destination": "TikTok"' in result.stdout
