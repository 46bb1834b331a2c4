"""The PostgreSQL outbox: one queue shared by any number of intakes and workers on any
number of machines.

Same model and guarantees as the SQLite outbox. A claim selects ready rows with
``FOR UPDATE SKIP LOCKED`` and leases them in the same statement, so concurrent workers
never wait on each other nor hold a live lease on the same row; a settle changes only
rows still leased by the settling worker. Delivered rows are deleted in the settling
transaction (their count and, for the dedup window, their identity are kept), so the
table holds only what is waiting. Every write that makes work ready sends
``NOTIFY cdp_outbox`` at commit: idle workers ``LISTEN`` and wake at once instead of
polling. The schema is created and migrated by the tool (:data:`SCHEMA_VERSION`, kept in
``cdp_schema_versions``), under an advisory lock so concurrent starts are safe. A lost
connection is reopened with backoff (:func:`cdp_tiktok.postgres.reconnecting`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cdp_tiktok.delivery.outbox import (
    DELIVERED_KEYS_RETENTION,
    DeadLetter,
    DestinationStatus,
    EncodedEvent,
    Enqueueable,
    OutboxRecord,
    OutboxStats,
    StatusBuilder,
    dedup_identity,
    event_fields,
    without_known,
)
from cdp_tiktok.events import Attempt, BatchKey
from cdp_tiktok.hookspecs import hookimpl
from cdp_tiktok.postgres import MIGRATION_LOCK, Session, connect, safe_url

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CHANNEL = "cdp_outbox"

_KEY_COLUMNS = "destination, event_source, event_source_id, test_event_code"
_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS cdp_schema_versions (
        component TEXT PRIMARY KEY, version INTEGER NOT NULL)""",
    """CREATE TABLE cdp_outbox (
        id              BIGSERIAL PRIMARY KEY,
        state           TEXT NOT NULL CHECK (state IN ('live', 'dead')),
        destination     TEXT NOT NULL,
        event_source    TEXT NOT NULL,
        event_source_id TEXT NOT NULL,
        test_event_code TEXT NOT NULL,
        event_id        TEXT,
        data            TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        history         JSONB NOT NULL DEFAULT '[]',
        enqueued_at     DOUBLE PRECISION NOT NULL,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        ready_at        DOUBLE PRECISION NOT NULL,
        lease_owner     TEXT,
        reason          TEXT,
        dead_at         DOUBLE PRECISION,
        dedup           TEXT)""",
    "CREATE INDEX cdp_outbox_ready ON cdp_outbox (state, next_attempt_at, id)",
    # A claim of one batch key walks this index in claim order whatever the statistics
    # say (a freshly filled queue has none, and a sort of every ready row is then chosen).
    # For that every key column is compared with "=": no test code is stored as ''.
    f"CREATE INDEX cdp_outbox_key_ready ON cdp_outbox ({_KEY_COLUMNS}, next_attempt_at, id)"
    " WHERE state = 'live'",
    "CREATE INDEX cdp_outbox_dedup ON cdp_outbox (dedup) WHERE dedup IS NOT NULL",
    """CREATE TABLE cdp_outbox_delivered_keys (
        dedup TEXT PRIMARY KEY, delivered_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX cdp_outbox_delivered_at ON cdp_outbox_delivered_keys (delivered_at)",
    """CREATE TABLE cdp_outbox_stops (
        destination TEXT PRIMARY KEY, reason TEXT NOT NULL,
        stopped_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE cdp_outbox_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)""",
    "INSERT INTO cdp_outbox_counters VALUES ('delivered', 0)",
]
_MIGRATIONS: dict[int, list[str]] = {}
"""Schema version -> statements taking the database to the next version."""

_RECORD_COLUMNS = f"id, {_KEY_COLUMNS}, data, event_id, attempts, enqueued_at, history"
_DEAD_COLUMNS = f"id, {_KEY_COLUMNS}, data, event_id, reason, history, enqueued_at, dead_at"
_KEY_MATCH = (
    " AND destination = %(destination)s AND event_source = %(event_source)s"
    " AND event_source_id = %(event_source_id)s AND test_event_code = %(test_event_code)s"
)
_GUARD = {
    True: "state = 'live' AND lease_owner = %(worker)s",
    False: "state = 'live'",
}
_WAITING = (
    "destination = %(destination)s AND state = 'live'"
    " AND NOT (lease_owner IS NOT NULL AND next_attempt_at > %(now)s)"
)
_COPY = (
    f"COPY cdp_outbox (id, state, {_KEY_COLUMNS}, event_id, data, dedup, enqueued_at,"
    " next_attempt_at, ready_at) FROM STDIN"
)
# The identities of a chunk that are live or were delivered since ``since``. By the
# dedup index and the delivered keys' primary key when the tables' statistics are fresh;
# on statistics from a smaller table the planner scans every live row instead (52 ms a
# chunk at 150,000 rows, against 1.3 ms), so the enqueuing connection runs ANALYZE as
# the table grows (ANALYZE_FIRST_AT).
_KNOWN_IDENTITIES = (
    "SELECT dedup FROM cdp_outbox WHERE dedup = ANY(%(ids)s) AND state = 'live'"
    " UNION SELECT dedup FROM cdp_outbox_delivered_keys WHERE dedup = ANY(%(ids)s)"
    " AND delivered_at >= %(since)s"
)
ANALYZE_FIRST_AT = 10_000
"""Rows one connection enqueues before it first runs ``ANALYZE`` on the outbox tables;
the next run comes after twice as many more (autovacuum's analyze lags a fast backfill
by a minute and more, and a few runs keep the estimates right as the table grows)."""
_ANALYZE = "ANALYZE cdp_outbox, cdp_outbox_delivered_keys"
# Ids come from the table's sequence first, so COPY (much faster than INSERT for a batch;
# it has no RETURNING) can store every row with its id, in enqueue order.
_IDS = "SELECT nextval(pg_get_serial_sequence('cdp_outbox', 'id')) FROM generate_series(1, %s)"

# The distinct keys by a skip scan of the key index (one index probe per key, not a scan
# of every waiting row), each kept when one of its rows is ready.
_READY_KEYS = f"""
WITH RECURSIVE k AS (
    (SELECT {_KEY_COLUMNS} FROM cdp_outbox WHERE state = 'live'
     ORDER BY {_KEY_COLUMNS} LIMIT 1)
    UNION ALL
    SELECT n.* FROM k CROSS JOIN LATERAL (
        SELECT {_KEY_COLUMNS} FROM cdp_outbox o
        WHERE o.state = 'live' AND ({_KEY_COLUMNS}) >
              (k.destination, k.event_source, k.event_source_id, k.test_event_code)
        ORDER BY {_KEY_COLUMNS} LIMIT 1) n
)
SELECT {_KEY_COLUMNS} FROM k WHERE EXISTS (
    SELECT 1 FROM cdp_outbox o WHERE o.state = 'live' AND o.destination = k.destination
    AND o.event_source = k.event_source AND o.event_source_id = k.event_source_id
    AND o.test_event_code = k.test_event_code AND o.next_attempt_at <= %(now)s)
ORDER BY {_KEY_COLUMNS}
"""

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _history(value: Any) -> tuple[Attempt, ...]:
    return tuple(Attempt(**item) for item in value or ())


def _key(row: Sequence[Any], start: int) -> BatchKey:
    return BatchKey(row[start], row[start + 1], row[start + 2], row[start + 3] or None)


def _record(row: Sequence[Any]) -> OutboxRecord:
    return OutboxRecord(
        row[0], _key(row, 1), row[5], row[6], row[7], float(row[8]), _history(row[9])
    )


def _dead_letter(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(
        id=row[0],
        key=_key(row, 1),
        data_json=row[5],
        event_id=row[6],
        reason=row[7],
        history=_history(row[8]),
        enqueued_at=float(row[9]),
        dead_at=float(row[10]),
    )


class PostgresOutbox:
    """An :class:`~cdp_tiktok.delivery.outbox.Outbox` in a PostgreSQL database.

    One connection per object, serialized by a lock (thread-safe); open one object per
    process or thread that needs parallel calls. The url must not carry a password.
    """

    def __init__(self, url: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._url = url
        self._shown = safe_url(url)
        self._session = Session(url, sleep=sleep)
        self._run = self._session.run
        self._listener: Any = None
        self._enqueued = 0  # rows this connection enqueued, for ANALYZE_FIRST_AT
        self._analyze_at = ANALYZE_FIRST_AT
        self.schema_version = self._migrate()

    def __repr__(self) -> str:
        return f"PostgresOutbox({self._shown!r})"

    # -- connection -----------------------------------------------------------------

    def _migrate(self) -> int:
        def migrate(cur: Any) -> int:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute("SELECT to_regclass('cdp_schema_versions') IS NOT NULL")
            version = 0
            if cur.fetchone()[0]:
                cur.execute("SELECT version FROM cdp_schema_versions WHERE component = 'outbox'")
                row = cur.fetchone()
                version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self._shown}: outbox schema version {version}, this version of "
                    f"cdp_tiktok understands up to {SCHEMA_VERSION}"
                )
            if version == 0:
                for statement in _SCHEMA:
                    cur.execute(statement)
                version = 1
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    cur.execute(statement)
                version += 1
            cur.execute(
                "INSERT INTO cdp_schema_versions VALUES ('outbox', %s) ON CONFLICT (component)"
                " DO UPDATE SET version = excluded.version",
                (version,),
            )
            return version

        return self._run("migrate", migrate)

    # -- enqueue and claim ----------------------------------------------------------

    def enqueue(
        self,
        events: Sequence[Enqueueable],
        *,
        now: float | None = None,
        dedup_seconds: float = 0.0,
    ) -> list[int]:
        """Store ``events`` in one transaction (all or nothing); see the protocol."""
        if not events:
            return []
        at = time.time() if now is None else now
        rows = []
        for event in events:
            data, event_id = event_fields(event)
            identity = (
                dedup_identity(event)
                if dedup_seconds > 0 or not isinstance(event, EncodedEvent)
                else None
            )
            rows.append((event.key, event_id, data, identity))

        def insert(cur: Any) -> list[int]:
            chosen = rows
            if dedup_seconds > 0:
                chosen = self._new_rows(cur, rows, at - dedup_seconds)
            if not chosen:
                return []
            cur.execute(_IDS, (len(chosen),))
            ids = sorted(row[0] for row in cur.fetchall())
            with cur.copy(_COPY) as copy:
                for id_, (key, event_id, data, identity) in zip(ids, chosen, strict=True):
                    copy.write_row(
                        (id_, "live", key.destination, key.event_source, key.event_source_id,
                         key.test_event_code or "", event_id, data, identity, at, at, at)
                    )  # fmt: skip
            cur.execute(f"NOTIFY {CHANNEL}")
            return ids

        stored = self._run("enqueue", insert)
        self._enqueued += len(stored)
        if self._enqueued >= self._analyze_at:
            self._analyze_at *= 2
            self._analyze()
        return stored

    def _analyze(self) -> None:
        """Refresh the planner's statistics of the outbox tables; best effort: the
        events are committed already, so a failure here is logged, never raised."""
        try:
            self._run("analyze", lambda cur: cur.execute(_ANALYZE), single=True)
        except Exception as exc:  # e.g. the connection is gone; the next enqueue reconnects
            name = type(exc).__name__
            log.warning("outbox %s: ANALYZE failed (%s); enqueue unaffected", self._shown, name)

    @staticmethod
    def _new_rows(cur: Any, rows: list[Any], since: float) -> list[Any]:
        identities = [r[3] for r in rows if r[3] is not None]
        cur.execute(_KNOWN_IDENTITIES, {"ids": identities, "since": since})
        known = {row[0] for row in cur.fetchall()}
        return without_known(rows, [r[3] for r in rows], known)

    def claim(
        self,
        worker: str,
        limit: int,
        lease_seconds: float,
        *,
        key: BatchKey | None = None,
        now: float | None = None,
    ) -> list[OutboxRecord]:
        """Lease up to ``limit`` ready rows, skipping rows other claims hold locked."""
        if limit <= 0:
            return []
        at = time.time() if now is None else now
        params: dict[str, Any] = {
            "now": at,
            "until": at + lease_seconds,
            "worker": worker,
            "limit": limit,
        }
        match = ""
        if key is not None:
            match = _KEY_MATCH
            params.update(
                destination=key.destination,
                event_source=key.event_source,
                event_source_id=key.event_source_id,
                test_event_code=key.test_event_code or "",
            )
        sql = f"""
            WITH chosen AS (
                SELECT id FROM cdp_outbox
                WHERE state = 'live' AND next_attempt_at <= %(now)s{match}
                ORDER BY next_attempt_at, id LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED)
            UPDATE cdp_outbox o SET
                ready_at = CASE WHEN o.lease_owner IS NULL THEN o.next_attempt_at
                                ELSE o.ready_at END,
                lease_owner = %(worker)s, next_attempt_at = %(until)s
            FROM chosen WHERE o.id = chosen.id
            RETURNING {", ".join("o." + c.strip() for c in _RECORD_COLUMNS.split(","))}"""

        def lease(cur: Any) -> list[OutboxRecord]:
            cur.execute(sql, params)
            return sorted((_record(row) for row in cur.fetchall()), key=lambda r: r.id)

        return self._run("claim", lease, single=True)

    def ready_keys(self, *, now: float | None = None) -> list[BatchKey]:
        """The distinct batch keys with claimable rows, in a stable order."""
        at = time.time() if now is None else now

        def read(cur: Any) -> list[BatchKey]:
            cur.execute(_READY_KEYS, {"now": at})
            return [_key(row, 0) for row in cur.fetchall()]

        return self._run("ready_keys", read, single=True)

    def next_ready_at(self) -> float | None:
        """The earliest retry time or lease expiry; ``None`` when nothing is live."""

        def read(cur: Any) -> float | None:
            cur.execute("SELECT MIN(next_attempt_at) FROM cdp_outbox WHERE state = 'live'")
            value = cur.fetchone()[0]
            return None if value is None else float(value)

        return self._run("next_ready_at", read, single=True)

    def wait_for_work(self, timeout: float) -> bool:
        """Block up to ``timeout`` s for a ``NOTIFY`` that work may be ready; ``True`` if one
        came. Uses its own listening connection; a lost one is reopened on the next call."""
        try:
            if self._listener is None:
                self._listener = connect(self._url)
                self._listener.execute(f"LISTEN {CHANNEL}")
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                return True
        except Exception:
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.close()
            time.sleep(min(timeout, 0.5))
        return False

    # -- settling -------------------------------------------------------------------

    def _settle(
        self,
        what: str,
        set_clause: str,
        ids: Sequence[int],
        worker: str | None,
        *,
        unless: str = "",
        **params: Any,
    ) -> int:
        if not ids:
            return 0
        sql = (
            f"UPDATE cdp_outbox SET {set_clause}"
            f" WHERE id = ANY(%(ids)s) AND {_GUARD[worker is not None]}{unless}"
        )

        def update(cur: Any) -> int:
            cur.execute(sql, {"ids": list(ids), "worker": worker, **params})
            count: int = cur.rowcount
            if count and "not_before" in params:  # a retry: a sleeping worker recomputes
                cur.execute(f"NOTIFY {CHANNEL}")
            return count

        return self._run(what, update)

    def mark_delivered(
        self, ids: Sequence[int], attempt: Attempt, *, worker: str | None = None
    ) -> int:
        """Delete the rows as delivered, keep their identity and count; return how many."""
        if not ids:
            return 0
        where = f"id = ANY(%(ids)s) AND {_GUARD[worker is not None]}"
        params = {
            "ids": list(ids),
            "worker": worker,
            "at": attempt.at,
            "expired": attempt.at - DELIVERED_KEYS_RETENTION,
        }

        def deliver(cur: Any) -> int:
            # One statement (its own transaction, one round trip): delete the rows, keep
            # their identities for the dedup window, count them, prune old identities.
            cur.execute(
                f"WITH gone AS (DELETE FROM cdp_outbox WHERE {where} RETURNING dedup),"
                " kept AS (INSERT INTO cdp_outbox_delivered_keys"
                " SELECT DISTINCT dedup, %(at)s FROM gone WHERE dedup IS NOT NULL"
                " ON CONFLICT (dedup) DO UPDATE SET delivered_at = excluded.delivered_at),"
                " counted AS (UPDATE cdp_outbox_counters SET value = value"
                " + (SELECT COUNT(*) FROM gone) WHERE name = 'delivered'),"
                " pruned AS (DELETE FROM cdp_outbox_delivered_keys"
                " WHERE delivered_at < %(expired)s)"
                " SELECT COUNT(*) FROM gone",
                params,
            )
            count: int = cur.fetchone()[0]
            return count

        return self._run("mark_delivered", deliver, single=True)

    def mark_retry(
        self,
        ids: Sequence[int],
        attempt: Attempt,
        not_before: float,
        *,
        worker: str | None = None,
    ) -> int:
        """Make the rows pending again from ``not_before``, recording ``attempt``."""
        return self._settle(
            "mark_retry",
            "lease_owner = NULL, attempts = attempts + 1,"
            " history = history || jsonb_build_array(%(attempt)s::jsonb),"
            " next_attempt_at = %(not_before)s, ready_at = %(not_before)s",
            ids,
            worker,
            # Unguarded, a retried row stays settleable: run again after the connection lost
            # the answer of an attempt that had committed, it must not count twice.
            unless="" if worker else " AND NOT history @> jsonb_build_array(%(attempt)s::jsonb)",
            attempt=_compact(attempt.as_dict()),
            not_before=not_before,
        )

    def mark_dead(
        self,
        ids: Sequence[int],
        attempt: Attempt | None,
        reason: str,
        *,
        worker: str | None = None,
    ) -> int:
        """Move the rows to the dead letters with ``reason`` (and ``attempt``)."""
        history = (
            "history"
            if attempt is None
            else "history || jsonb_build_array(%(attempt)s::jsonb), attempts = attempts + 1"
        )
        return self._settle(
            "mark_dead",
            "state = 'dead', lease_owner = NULL, reason = %(reason)s, dead_at = %(dead_at)s,"
            f" history = {history}",
            ids,
            worker,
            attempt=None if attempt is None else _compact(attempt.as_dict()),
            reason=reason,
            dead_at=attempt.at if attempt is not None else time.time(),
        )

    def release(self, ids: Sequence[int], *, worker: str | None = None) -> int:
        """Give leases back without counting an attempt; the rows are ready again."""
        if not ids:
            return 0
        guard = "lease_owner = %(worker)s" if worker is not None else "lease_owner IS NOT NULL"
        return self._release(ids, guard, worker)

    def _release(self, ids: Sequence[int], guard: str, worker: str | None) -> int:
        def update(cur: Any) -> int:
            cur.execute(
                "UPDATE cdp_outbox SET lease_owner = NULL, next_attempt_at = ready_at"
                f" WHERE id = ANY(%(ids)s) AND state = 'live' AND {guard}",
                {"ids": list(ids), "worker": worker},
            )
            count: int = cur.rowcount
            if count:
                cur.execute(f"NOTIFY {CHANNEL}")
            return count

        return self._run("release", update)

    # -- inspection -----------------------------------------------------------------

    def stats(self, *, now: float | None = None) -> OutboxStats:
        """Counts by state at ``now`` (one snapshot)."""
        at = time.time() if now is None else now

        def read(cur: Any) -> OutboxStats:
            cur.execute(
                "SELECT COUNT(*) FILTER (WHERE state = 'live' AND NOT (lease_owner IS NOT NULL"
                " AND next_attempt_at > %(now)s)),"
                " COUNT(*) FILTER (WHERE state = 'live' AND lease_owner IS NOT NULL"
                " AND next_attempt_at > %(now)s),"
                " COUNT(*) FILTER (WHERE state = 'dead'),"
                " COUNT(*) FILTER (WHERE state = 'live' AND lease_owner IS NULL"
                " AND next_attempt_at > %(now)s),"
                " (SELECT value FROM cdp_outbox_counters WHERE name = 'delivered')"
                " FROM cdp_outbox",
                {"now": at},
            )
            pending, leased, dead, held, delivered = cur.fetchone()
            return OutboxStats(
                pending=pending, leased=leased, delivered=delivered, dead=dead, held=held
            )

        return self._run("stats", read, single=True)

    def status(self, *, now: float | None = None) -> list[DestinationStatus]:
        """Per destination: counts by state, oldest age, stop reason (one snapshot)."""
        at = time.time() if now is None else now

        def read(cur: Any) -> list[DestinationStatus]:
            cur.execute("SELECT destination, reason, stopped_at FROM cdp_outbox_stops")
            stops = {name: (reason, float(when)) for name, reason, when in cur.fetchall()}
            builder = StatusBuilder(stops)
            cur.execute(
                "SELECT destination, state = 'dead', lease_owner IS NOT NULL,"
                " next_attempt_at > %s, COUNT(*), MIN(enqueued_at) FROM cdp_outbox"
                " GROUP BY 1, 2, 3, 4",
                (at,),
            )
            for destination, dead, leased, later, count, oldest in cur.fetchall():
                builder.add(
                    destination, dead=dead, leased=leased, later=later, count=count, oldest=oldest
                )
            return builder.result()

        return self._run("status", read)

    def stop_destination(
        self, destination: str, reason: str | None, *, now: float | None = None
    ) -> None:
        """Record (or with ``None`` clear) why ``destination`` is stopped."""
        at = time.time() if now is None else now

        def write(cur: Any) -> None:
            if reason is None:
                cur.execute("DELETE FROM cdp_outbox_stops WHERE destination = %s", (destination,))
            else:
                cur.execute(
                    "INSERT INTO cdp_outbox_stops VALUES (%s, %s, %s) ON CONFLICT (destination)"
                    " DO UPDATE SET reason = excluded.reason, stopped_at = excluded.stopped_at",
                    (destination, reason, at),
                )

        self._run("stop_destination", write)

    def release_destination(self, destination: str, *, now: float | None = None) -> int:
        """Clear the stop and make the destination's waiting rows ready at ``now``."""
        params = {"destination": destination, "now": time.time() if now is None else now}

        def write(cur: Any) -> int:
            cur.execute("DELETE FROM cdp_outbox_stops WHERE destination = %(destination)s", params)
            cur.execute(
                "UPDATE cdp_outbox SET lease_owner = NULL, next_attempt_at = %(now)s,"
                f" ready_at = %(now)s WHERE {_WAITING}",
                params,
            )
            count: int = cur.rowcount
            cur.execute(f"NOTIFY {CHANNEL}")
            return count

        return self._run("release_destination", write)

    def purge_destination(self, destination: str, *, now: float | None = None) -> int:
        """Delete the destination's pending and waiting rows; clear its stop."""
        params = {"destination": destination, "now": time.time() if now is None else now}

        def write(cur: Any) -> int:
            cur.execute("DELETE FROM cdp_outbox_stops WHERE destination = %(destination)s", params)
            cur.execute(f"DELETE FROM cdp_outbox WHERE {_WAITING}", params)
            count: int = cur.rowcount
            return count

        return self._run("purge_destination", write)

    def dead_letters(self, *, limit: int | None = None) -> Iterator[DeadLetter]:
        """Dead letters, oldest death first, at most ``limit``."""

        def read(cur: Any) -> list[DeadLetter]:
            cur.execute(
                f"SELECT {_DEAD_COLUMNS} FROM cdp_outbox WHERE state = 'dead'"
                " ORDER BY dead_at, id LIMIT %s",
                (limit,),
            )
            return [_dead_letter(row) for row in cur.fetchall()]

        return iter(self._run("dead_letters", read, single=True))

    def get_dead_letter(self, id: int) -> DeadLetter | None:
        """One dead letter by id, or ``None``."""

        def read(cur: Any) -> DeadLetter | None:
            cur.execute(
                f"SELECT {_DEAD_COLUMNS} FROM cdp_outbox WHERE state = 'dead' AND id = %s", (id,)
            )
            row = cur.fetchone()
            return None if row is None else _dead_letter(row)

        return self._run("get_dead_letter", read, single=True)

    def replay(self, ids: Sequence[int] | None = None, *, now: float | None = None) -> int:
        """Move dead letters back to pending, ready at ``now``, attempts reset."""
        at = time.time() if now is None else now
        where = "state = 'dead'" + ("" if ids is None else " AND id = ANY(%(ids)s)")

        def write(cur: Any) -> int:
            cur.execute(
                "UPDATE cdp_outbox SET state = 'live', attempts = 0, reason = NULL,"
                f" dead_at = NULL, next_attempt_at = %(now)s, ready_at = %(now)s WHERE {where}",
                {"now": at, "ids": None if ids is None else list(ids)},
            )
            count: int = cur.rowcount
            if count:
                cur.execute(f"NOTIFY {CHANNEL}")
            return count

        return self._run("replay", write)

    def purge(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters for good; return how many."""
        where = "state = 'dead'" + ("" if ids is None else " AND id = ANY(%(ids)s)")

        def write(cur: Any) -> int:
            cur.execute(
                f"DELETE FROM cdp_outbox WHERE {where}",
                {"ids": None if ids is None else list(ids)},
            )
            count: int = cur.rowcount
            return count

        return self._run("purge", write)

    def close(self) -> None:
        """Close the connections; unsettled leases expire on their own."""
        self._session.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def open_postgres_outbox(url: str) -> PostgresOutbox:
    """The outbox of a ``postgresql://user@host:port/db`` url (no password in it)."""
    return PostgresOutbox(url)


@hookimpl
def cdp_register_outbox_backends(register: Any) -> None:
    """The built-in ``postgresql://`` (and ``postgres://``) outbox."""
    register("postgresql", open_postgres_outbox)
    register("postgres", open_postgres_outbox)
