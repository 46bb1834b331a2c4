"""Benchmark: how delivery from one PostgreSQL outbox scales with worker processes.

For each round, interleaved: with the sandbox adding ``--latency-ms`` per request (I/O
bound, as with real TikTok) and with no added latency, ``--events`` events are enqueued
into a fresh PostgreSQL outbox and delivered by 1, 2 and 4 ``cdp-tiktok worker``
processes (``--concurrency`` requests in flight each, ``--batch`` events per request) to
a sandbox in another process; the time runs from the workers' start until every event is
settled delivered. Prints events/s for each, the 4-worker / 1-worker ratio (goal >= 3.5x
with latency), and the enqueue rate (``Outbox.enqueue`` in chunks of 1,000) against a
bare ``COPY`` and a bare ``executemany`` of the same rows into a table of the same shape,
in the same run. Medians of ``--rounds`` rounds. ``--quick`` runs 10,000 events, one
round (about a minute here). The database (``cdp_bench_<pid>``) is created and dropped.

Run: ``python benchmarks/bench_scaleout.py [--quick] [--events N] [--rounds R]
[--admin-url postgresql://postgres@127.0.0.1:5432/postgres]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

from cdp_tiktok.delivery.postgres_outbox import PostgresOutbox
from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN

KEY = BatchKey("TikTok", "web", "CBENCHPIXEL000000001")
WORKERS = (1, 2, 4)
GOAL_RATIO = 3.5
CHUNK = 1000


def make_events(count: int) -> list[OutgoingEvent]:
    """Mapped events like production's: hashed keys, page, contents (~600 bytes each)."""
    return [
        OutgoingEvent(
            KEY,
            {
                "event": "CompletePayment",
                "event_id": f"bench-{n}",
                "event_time": 1_900_000_000 + n,
                "user": {
                    "email": [f"{n:064x}"],
                    "external_id": [f"{n + 7:064x}"],
                    "ip": "203.0.113.7",
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                },
                "page": {"url": f"https://shop.example/p/{n}"},
                "properties": {
                    "value": 10 + n % 90,
                    "currency": "EUR",
                    "contents": [{"content_id": f"sku-{n % 500}", "quantity": 1, "price": 10}],
                },
            },
        )
        for n in range(count)
    ]


@contextmanager
def database(admin_url: str) -> Iterator[str]:
    """A fresh database for the run, dropped at the end."""
    name = f"cdp_bench_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sandbox(latency_ms: float) -> Iterator[str]:
    """``python -m cdp_tiktok.sandbox`` in another process, keeping no events in memory."""
    command = [sys.executable, "-m", "cdp_tiktok.sandbox", "--port", "0",
               "--memory-limit", "0", "--latency-ms", str(latency_ms)]  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    try:
        if not url.startswith("http"):
            raise SystemExit(f"the sandbox did not start (said {url!r})")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def reset(url: str) -> None:
    """Empty the outbox tables between measurements."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE cdp_outbox, cdp_outbox_delivered_keys, cdp_outbox_stops")
        conn.execute("UPDATE cdp_outbox_counters SET value = 0")


def enqueue_rate(url: str, events: list[OutgoingEvent]) -> float:
    """Events/s through ``Outbox.enqueue`` in chunks of :data:`CHUNK` (one commit each)."""
    reset(url)
    box = PostgresOutbox(url)
    start = time.perf_counter()
    for at in range(0, len(events), CHUNK):
        box.enqueue(events[at : at + CHUNK])
    elapsed = time.perf_counter() - start
    box.close()
    return len(events) / elapsed


def bare_rates(url: str, events: list[OutgoingEvent]) -> tuple[float, float]:
    """Events/s of a bare COPY and a bare executemany of the same rows (one commit per
    :data:`CHUNK`) into a table shaped like the outbox, with its index."""
    from cdp_tiktok.delivery.outbox import encode_data

    rows = [
        ("live", e.key.destination, e.key.event_source, e.key.event_source_id, "",
         e.event_id, encode_data(e.data), 1.0, 1.0, 1.0)
        for e in events
    ]  # fmt: skip
    columns = (
        "state, destination, event_source, event_source_id, test_event_code, event_id,"
        " data, enqueued_at, next_attempt_at, ready_at"
    )
    rates = []
    with psycopg.connect(url, autocommit=True) as conn:
        for method in ("copy", "executemany"):
            conn.execute("DROP TABLE IF EXISTS bench_bare")
            conn.execute("CREATE TABLE bench_bare (LIKE cdp_outbox INCLUDING ALL)")
            start = time.perf_counter()
            for at in range(0, len(rows), CHUNK):
                part = rows[at : at + CHUNK]
                with conn.transaction(), conn.cursor() as cur:
                    if method == "copy":
                        with cur.copy(f"COPY bench_bare ({columns}) FROM STDIN") as copy:
                            for row in part:
                                copy.write_row(row)
                    else:
                        cur.executemany(
                            f"INSERT INTO bench_bare ({columns}) VALUES"
                            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            part,
                        )
            rates.append(len(rows) / (time.perf_counter() - start))
        conn.execute("DROP TABLE bench_bare")
    return rates[0], rates[1]


def delivered(conn: psycopg.Connection[tuple[int]]) -> int:
    """The outbox's delivered count (one row)."""
    row = conn.execute("SELECT value FROM cdp_outbox_counters WHERE name = 'delivered'")
    return int(row.fetchone()[0])  # type: ignore[index]


def deliver(url: str, endpoint: str, events: list[OutgoingEvent], workers: int,
            args: argparse.Namespace, settings: Path) -> float:  # fmt: skip
    """Events/s: ``workers`` worker processes deliver the freshly enqueued events.

    The events are enqueued not ready (far in the future); once every worker said it is
    delivering, they are made ready at once (and ``NOTIFY`` wakes the workers), so the
    timing excludes enqueueing and the workers' start-up.
    """
    reset(url)
    box = PostgresOutbox(url)
    for at in range(0, len(events), CHUNK):
        box.enqueue(events[at : at + CHUNK], now=time.time() + 86400)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_TIKTOK_")}
    command = [
        sys.executable, "-m", "cdp_tiktok", "worker", "--outbox", url, "--endpoint", endpoint,
        "--access-token", SANDBOX_ACCESS_TOKEN, "--settings", str(settings),
        "--concurrency", str(args.concurrency),
    ]  # fmt: skip
    processes = [
        subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    try:
        for process in processes:
            assert process.stderr is not None
            line = process.stderr.readline()
            if "worker delivering" not in line:
                raise SystemExit(f"a worker did not start: {line!r}")
        with psycopg.connect(url, autocommit=True) as conn:
            start = time.perf_counter()
            now = time.time()
            conn.execute(
                "UPDATE cdp_outbox SET next_attempt_at = %s, ready_at = %s, enqueued_at = %s",
                (now, now, now),
            )
            conn.execute("NOTIFY cdp_outbox")
        deadline = time.monotonic() + args.timeout
        with psycopg.connect(url, autocommit=True) as conn:
            # the counter row, not stats(): a count over the whole queue every few ms
            # would load the database the workers are measured on
            while delivered(conn) < len(events):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{workers} worker(s) did not finish in {args.timeout} s")
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        box.close()
    return len(events) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight/worker")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per delivery")
    parser.add_argument("--quick", action="store_true", help="10,000 events, one round")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "CDP_TIKTOK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    if args.quick:
        args.events, args.rounds = 10_000, 1
    events = make_events(args.events)
    rates: dict[tuple[float, int], list[float]] = {}
    enqueue: list[float] = []
    copy: list[float] = []
    many: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, database(args.admin_url) as url:
        settings = Path(tmp) / "settings.yaml"
        settings.write_text(f"batch_max_events: {args.batch}\n")
        PostgresOutbox(url).close()  # create the schema
        for round_number in range(args.rounds):
            enqueue.append(enqueue_rate(url, events))
            bare_copy, bare_many = bare_rates(url, events)
            copy.append(bare_copy)
            many.append(bare_many)
            for latency in (args.latency_ms, 0.0):
                with sandbox(latency) as endpoint:
                    httpx.get(endpoint + "/sandbox/stats").raise_for_status()
                    for workers in WORKERS:
                        rate = deliver(url, endpoint, events, workers, args, settings)
                        rates.setdefault((latency, workers), []).append(rate)
                        print(f"round {round_number + 1}: latency {latency:g} ms, "
                              f"{workers} worker(s): {rate:,.0f} events/s", flush=True)  # fmt: skip
    print(f"\n{args.events:,} events, {args.batch} per request, {args.concurrency} in flight "
          f"per worker, median of {args.rounds} round(s):")  # fmt: skip
    for latency in (args.latency_ms, 0.0):
        medians = {w: statistics.median(rates[(latency, w)]) for w in WORKERS}
        line = ", ".join(f"{w} worker(s) {medians[w]:,.0f} events/s" for w in WORKERS)
        ratio = medians[4] / medians[1]
        goal = f" (goal >= {GOAL_RATIO}x)" if latency else ""
        print(f"  latency {latency:g} ms: {line}; 4/1 = {ratio:.2f}x{goal}")
    ours, bare_copy, bare_many = (statistics.median(x) for x in (enqueue, copy, many))
    print(f"  enqueue: Outbox.enqueue {ours:,.0f} events/s; bare COPY {bare_copy:,.0f}/s "
          f"({ours / bare_copy:.2f}x); bare executemany {bare_many:,.0f}/s "
          f"({ours / bare_many:.2f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
