"""A stateful model check of the outbox: random operation sequences against a simple model.

Each backend runs the same machine. The model tracks, per record, its state, lease owner,
next claimable time and attempts; every step compares the backend's answers (claimed ids,
settle counts, stats, dead letters, next ready time) with the model's.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cdp_tiktok.delivery.memory_outbox import MemoryOutbox
from cdp_tiktok.delivery.outbox import Outbox, OutboxStats
from cdp_tiktok.delivery.postgres_outbox import PostgresOutbox
from cdp_tiktok.delivery.sqlite_outbox import SQLiteOutbox
from cdp_tiktok.events import Attempt, BatchKey, OutgoingEvent
from tests.pg import fresh_database

KEYS = (BatchKey("TikTok", "web", "CPIXEL_A"), BatchKey("TikTok", "web", "CPIXEL_A", "TEST1"))
WORKERS = ("w1", "w2", "w3")
SETTLES = ("delivered", "retry", "dead", "release")
PICKS = st.lists(st.integers(0, 10_000), max_size=6)


@dataclass
class Rec:
    """The model of one record."""

    key: BatchKey
    state: str = "pending"  # pending | leased | dead
    owner: str | None = None
    next_at: float = 0.0  # retry time while pending, lease expiry while leased
    ready_at: float = 0.0
    attempts: int = 0
    history: int = 0  # attempts ever recorded; replay resets attempts, not history
    dead_at: float = 0.0


class OutboxMachine(RuleBasedStateMachine):
    """Drives one outbox and the model side by side."""

    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-sm-"))
        self.box = self.open()
        self.now = 1_000.0
        self.model: dict[int, Rec] = {}
        self.known: list[int] = []  # every id ever handed out, including deleted ones
        self.delivered = 0
        self.serial = 0

    def open(self) -> Outbox:
        return SQLiteOutbox(self.dir / "outbox.db") if self.backend == "sqlite" else MemoryOutbox()

    def teardown(self) -> None:
        self.box.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def pick(self, picks: list[int]) -> list[int]:
        return [self.known[p % len(self.known)] for p in picks] if self.known else []

    def attempt(self, outcome: str) -> Attempt:
        return Attempt(self.now, outcome, 50001, 200, outcome, f"req-{self.serial}")

    def live(self, rec: Rec) -> bool:
        return rec.state != "dead"

    def settleable(self, ids: list[int], worker: str | None) -> list[int]:
        chosen = []
        for i in dict.fromkeys(ids):
            rec = self.model.get(i)
            if rec is None or rec.state == "dead":
                continue
            if worker is None or (rec.state == "leased" and rec.owner == worker):
                chosen.append(i)
        return chosen

    # -- rules ----------------------------------------------------------------------

    @rule(n=st.integers(1, 4), key=st.sampled_from(KEYS))
    def enqueue(self, n: int, key: BatchKey) -> None:
        events = []
        for _ in range(n):
            self.serial += 1
            events.append(OutgoingEvent(key, {"event": "Purchase", "event_id": f"e{self.serial}"}))
        ids = self.box.enqueue(events, now=self.now)
        assert len(ids) == n and not set(ids) & set(self.known)
        assert ids == sorted(ids) and (not self.known or ids[0] > max(self.known))
        for i in ids:
            self.model[i] = Rec(key, next_at=self.now, ready_at=self.now)
        self.known += ids

    @rule(
        worker=st.sampled_from(WORKERS),
        limit=st.integers(1, 5),
        lease=st.integers(1, 5),
        key=st.none() | st.sampled_from(KEYS),
    )
    def claim(self, worker: str, limit: int, lease: int, key: BatchKey | None) -> None:
        ready = [
            (rec.next_at, i)
            for i, rec in self.model.items()
            if self.live(rec) and rec.next_at <= self.now and key in (None, rec.key)
        ]
        expected = sorted(i for _, i in sorted(ready)[:limit])

        got = self.box.claim(worker, limit, lease, key=key, now=self.now)

        assert [r.id for r in got] == expected
        for record in got:
            rec = self.model[record.id]
            # Never leased to two workers at once: any previous lease had expired.
            assert rec.state == "pending" or rec.next_at <= self.now
            assert record.attempts == rec.attempts and len(record.history) == rec.history
            assert record.key == rec.key
            if rec.state == "pending":
                rec.ready_at = rec.next_at
            rec.state, rec.owner, rec.next_at = "leased", worker, self.now + lease

    @rule(
        kind=st.sampled_from(SETTLES),
        worker=st.none() | st.sampled_from(WORKERS),
        picks=PICKS,
        delay=st.integers(0, 6),
    )
    def settle(self, kind: str, worker: str | None, picks: list[int], delay: int) -> None:
        ids = self.pick(picks)
        self.serial += 1
        if kind == "release":
            chosen = [
                i
                for i in dict.fromkeys(ids)
                if (rec := self.model.get(i)) is not None
                and rec.state == "leased"
                and worker in (None, rec.owner)
            ]
            assert self.box.release(ids, worker=worker) == len(chosen)
            for i in chosen:
                rec = self.model[i]
                rec.state, rec.owner, rec.next_at = "pending", None, rec.ready_at
            return
        chosen = self.settleable(ids, worker)
        if kind == "delivered":
            count = self.box.mark_delivered(ids, self.attempt("delivered"), worker=worker)
            for i in chosen:
                del self.model[i]
            self.delivered += len(chosen)
        elif kind == "retry":
            count = self.box.mark_retry(ids, self.attempt("retry"), self.now + delay, worker=worker)
            for i in chosen:
                rec = self.model[i]
                rec.state, rec.owner, rec.attempts = "pending", None, rec.attempts + 1
                rec.history += 1
                rec.next_at = rec.ready_at = self.now + delay
        else:
            count = self.box.mark_dead(ids, self.attempt("dead"), "bad event", worker=worker)
            for i in chosen:
                rec = self.model[i]
                rec.state, rec.owner, rec.attempts = "dead", None, rec.attempts + 1
                rec.history += 1
                rec.dead_at = self.now
        assert count == len(chosen)

    @rule(seconds=st.integers(0, 6))
    def advance(self, seconds: int) -> None:
        self.now += seconds

    @rule()
    def crash(self) -> None:
        """A worker dies without settling: its leases stay until they expire."""
        self.box.close()
        if self.backend == "sqlite":
            self.box = self.open()
        elif self.backend == "postgresql":
            self.box = PostgresOutbox(self.url)  # a new process on the same rows
        else:
            pass  # a MemoryOutbox lives in this process; close() keeps its records

    @precondition(lambda self: any(r.state == "dead" for r in self.model.values()))
    @rule(picks=st.none() | PICKS)
    def replay(self, picks: list[int] | None) -> None:
        ids = None if picks is None else self.pick(picks)
        chosen = [
            i for i, rec in self.model.items() if rec.state == "dead" and (ids is None or i in ids)
        ]
        assert self.box.replay(ids, now=self.now) == len(chosen)
        for i in chosen:
            rec = self.model[i]
            rec.state, rec.attempts = "pending", 0
            rec.next_at = rec.ready_at = self.now

    @precondition(lambda self: any(r.state == "dead" for r in self.model.values()))
    @rule(picks=PICKS)
    def purge(self, picks: list[int]) -> None:
        ids = self.pick(picks)
        chosen = [
            i for i in dict.fromkeys(ids) if i in self.model and self.model[i].state == "dead"
        ]
        assert self.box.purge(ids) == len(chosen)
        for i in chosen:
            del self.model[i]

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def stats_match_the_model(self) -> None:
        pending = leased = dead = held = 0
        for rec in self.model.values():
            if rec.state == "dead":
                dead += 1
            elif rec.state == "leased" and rec.next_at > self.now:
                leased += 1
            else:
                pending += 1
                held += rec.state == "pending" and rec.next_at > self.now
        stats = self.box.stats(now=self.now)
        assert stats == OutboxStats(pending, leased, self.delivered, dead, held)
        # Every record that ever entered is in exactly one state (or was purged).
        assert stats.pending + stats.leased + stats.dead == len(self.model)

    @invariant()
    def undelivered_count_matches_stats(self) -> None:
        # The intake's backlog count (SQLite only) is stats' pending + leased, at any time.
        if isinstance(self.box, SQLiteOutbox):
            stats = self.box.stats(now=self.now)
            assert self.box.undelivered() == stats.pending + stats.leased

    @invariant()
    def dead_letters_match_the_model(self) -> None:
        expected = sorted((rec.dead_at, i) for i, rec in self.model.items() if rec.state == "dead")
        letters = list(self.box.dead_letters())
        assert [(d.dead_at, d.id) for d in letters] == expected
        assert all(len(d.history) == self.model[d.id].history for d in letters)
        assert all(
            isinstance(d.dead_at, float) and isinstance(d.enqueued_at, float) for d in letters
        )

    @invariant()
    def next_ready_at_matches_the_model(self) -> None:
        times = [rec.next_at for rec in self.model.values() if self.live(rec)]
        assert self.box.next_ready_at() == (min(times) if times else None)


class MemoryOutboxMachine(OutboxMachine):
    backend = "memory"


class PostgresOutboxMachine(OutboxMachine):
    """One database for the class (created and dropped by ``pg_database``), emptied per run."""

    backend = "postgresql"
    url = ""

    def open(self) -> Outbox:
        # never libpq's default database (shared by every run on the server)
        assert self.url, "pg_database sets the url of this run's own database"
        box = PostgresOutbox(self.url)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "TRUNCATE cdp_outbox, cdp_outbox_delivered_keys, cdp_outbox_stops RESTART IDENTITY"
            )
            conn.execute("UPDATE cdp_outbox_counters SET value = 0")
        return box


@pytest.fixture(scope="class")
def pg_database() -> Iterator[None]:
    """The machine's own database (``request.cls`` would be the generated TestCase, and
    the machine would run against libpq's default database shared with other runs)."""
    with fresh_database() as url:
        PostgresOutboxMachine.url = url
        try:
            yield
        finally:
            PostgresOutboxMachine.url = ""


MACHINE_SETTINGS = settings(max_examples=100, stateful_step_count=30)
TestSQLiteOutboxStateMachine = OutboxMachine.TestCase
TestSQLiteOutboxStateMachine.settings = MACHINE_SETTINGS
TestMemoryOutboxStateMachine = MemoryOutboxMachine.TestCase
TestMemoryOutboxStateMachine.settings = MACHINE_SETTINGS
TestPostgresOutboxStateMachine = pytest.mark.usefixtures("pg_database")(
    PostgresOutboxMachine.TestCase
)
TestPostgresOutboxStateMachine.settings = settings(max_examples=20, stateful_step_count=30)
