"""The SQLite outbox: one file, durable on every acknowledged write, shareable by processes.

Durability rests on WAL journaling with ``synchronous=FULL``: a transaction's commit
returns only after its WAL frames are fsynced, so an acknowledged ``enqueue`` survives
``kill -9`` and power loss. Several worker processes may share one file: every write is
a ``BEGIN IMMEDIATE`` transaction (one writer at a time, others wait up to the busy
timeout), and a claim selects and leases its records in one ``UPDATE ... RETURNING``
statement, so two workers never hold a live lease on the same record.

Delivered records are deleted (the file stays small); the ``delivered`` count lives in
the ``counters`` table, updated in the same transaction. The event text of each record
lives in ``outbox_data`` (schema version 3), so leases and settles rewrite only the
narrow ``outbox`` rows; a trigger deletes the text with its record. Dead letters stay in the
``outbox`` table with state ``dead`` and keep their id through replay.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

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
from cdp_tiktok.storage import located, storage_error

SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 30_000
SETTING = "the outbox setting (--outbox, CDP_TIKTOK_OUTBOX)"
"""What chooses the outbox file, for error messages."""

# state is 'live' (pending when lease_owner is NULL, leased otherwise) or 'dead'.
# next_attempt_at is "when this record is next claimable": the retry time while pending,
# the lease expiry while leased; ready_at keeps the retry time during a lease, so that
# release() can restore it. The (state, next_attempt_at) index then answers every "what
# is ready" query in claim order (next_attempt_at, then id) without sorting.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    state           TEXT    NOT NULL CHECK (state IN ('live', 'dead')),
    destination     TEXT    NOT NULL,
    event_source    TEXT    NOT NULL,
    event_source_id TEXT    NOT NULL,
    test_event_code TEXT,
    event_id        TEXT,
    data            TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    history         TEXT    NOT NULL DEFAULT '[]',
    enqueued_at     REAL    NOT NULL,
    next_attempt_at REAL    NOT NULL,
    ready_at        REAL    NOT NULL,
    lease_owner     TEXT,
    reason          TEXT,
    dead_at         REAL
);
CREATE INDEX IF NOT EXISTS outbox_state_next ON outbox (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('delivered', 0);
"""
# Version 2: idempotent enqueue (the identity of each record, and of delivered events for
# DELIVERED_KEYS_RETENTION) and the persisted stop reason of each stopped destination.
_MIGRATE_TO_2 = """
ALTER TABLE outbox ADD COLUMN dedup TEXT;
CREATE INDEX IF NOT EXISTS outbox_dedup ON outbox (dedup) WHERE dedup IS NOT NULL;
CREATE TABLE IF NOT EXISTS delivered_keys (
    dedup        TEXT PRIMARY KEY,
    delivered_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivered_keys_at ON delivered_keys (delivered_at);
CREATE TABLE IF NOT EXISTS stops (
    destination TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    stopped_at  REAL NOT NULL
);
"""
# Version 3: the event text lives in a table of its own, so that leasing and settling
# rewrite the narrow outbox rows (~100 bytes) instead of rows holding ~800 bytes of JSON:
# a claim's UPDATE then writes a fifth of the pages. outbox.data stays, empty. A trigger
# deletes the text with its record, whichever statement deletes it.
_MIGRATE_TO_3 = (
    "CREATE TABLE IF NOT EXISTS outbox_data (id INTEGER PRIMARY KEY, data TEXT NOT NULL)",
    "INSERT INTO outbox_data (id, data) SELECT id, data FROM outbox",
    "UPDATE outbox SET data = ''",
    "CREATE TRIGGER IF NOT EXISTS outbox_data_gone AFTER DELETE ON outbox"
    " BEGIN DELETE FROM outbox_data WHERE id = OLD.id; END",
)
_MIGRATIONS: dict[int, str | tuple[str, ...]] = {1: _MIGRATE_TO_2, 2: _MIGRATE_TO_3}
"""Schema version -> the statements that take a file from it to the next version."""

_KEY_COLUMNS = "destination, event_source, event_source_id, test_event_code"
_RECORD_COLUMNS = f"outbox.id, {_KEY_COLUMNS}, d.data, event_id, attempts, enqueued_at, history"
_DEAD_COLUMNS = (
    f"outbox.id, {_KEY_COLUMNS}, d.data, event_id, reason, history, enqueued_at, dead_at"
)
# CROSS JOIN keeps the outbox (and its index) as the outer loop: one rowid lookup of the
# text per record chosen.
_WITH_DATA = "outbox CROSS JOIN outbox_data AS d ON d.id = outbox.id"
_READY = "state = 'live' AND next_attempt_at <= :now"
_KEY_MATCH = (
    "destination = :destination AND event_source = :event_source"
    " AND event_source_id = :event_source_id AND test_event_code IS :test_event_code"
)
_IDS = "id IN (SELECT value FROM json_each(:ids))"
# A guarded settle touches only records still leased by that worker; an unguarded one
# touches any live record. The unary + keeps SQLite on the rowid lookup of the id list.
_GUARD = {True: "+state = 'live' AND lease_owner = :worker", False: "+state = 'live'"}

# One statement for both kinds of event. ?8 marks an encoded event: its text is checked
# to be one JSON object (a row that fails is not inserted, and enqueue raises) and its
# event_id is read from it, in SQLite's C JSON parser rather than in Python.
_INSERT = f"""
INSERT INTO outbox (state, {_KEY_COLUMNS}, event_id, data, enqueued_at, next_attempt_at,
                    ready_at, dedup)
SELECT 'live', ?1, ?2, ?3, ?4,
       CASE WHEN NOT ?8 THEN ?5
            WHEN json_type(?6, '$.event_id') = 'text' THEN json_extract(?6, '$.event_id') END,
       '', ?7, ?7, ?7, ?9
WHERE CASE WHEN ?8 THEN CASE WHEN json_valid(?6) THEN json_type(?6) END = 'object' ELSE 1 END
"""
# Rows of events whose text Python encoded or checked go in by multi-row VALUES
# statements of these many rows (then the binary digits of the rest: a few distinct
# statements, all kept in the connection's statement cache): one statement per
# _ROWS_PER_INSERT rows costs a third less than one execution per row.
_ROWS_PER_INSERT = 128
_PLAIN_ROW = "('live',?,?,?,?,?,'',?,?,?,?)"
_PLAIN_INSERT = (
    f"INSERT INTO outbox (state, {_KEY_COLUMNS}, event_id, data, enqueued_at, next_attempt_at,"
    " ready_at, dedup) VALUES "
)
_DATA_INSERT = "INSERT INTO outbox_data (id, data) VALUES "
# SQLite 3.42 to 3.44 accept JSON5 (NaN, comments, ...) in json_valid(); there, encoded
# events are checked in Python instead.
_SQL_CHECKS_JSON = not (3, 42, 0) <= sqlite3.sqlite_version_info < (3, 45, 0)


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_decode = json.JSONDecoder().decode


def _history(text: str) -> tuple[Attempt, ...]:
    if text == "[]":
        return ()
    return tuple(Attempt(**item) for item in _decode(text))


def _key(row: Sequence[Any], start: int) -> BatchKey:
    return BatchKey(row[start], row[start + 1], row[start + 2], row[start + 3])


def _records(rows: list[Any]) -> list[OutboxRecord]:
    """Records from claimed rows, in id order; equal batch keys share one object."""
    rows.sort(key=itemgetter(0))  # linear when already in id order (the usual claim)
    keys: dict[tuple[Any, ...], BatchKey] = {}
    records: list[OutboxRecord] = []
    append = records.append
    for id_, destination, source, source_id, code, data, event_id, attempts, at, past in rows:
        marker = (destination, source, source_id, code)
        key = keys.get(marker)
        if key is None:
            key = keys[marker] = BatchKey(*marker)
        # enqueued_at is a REAL column: SQLite hands back a float already.
        history = () if past == "[]" else _history(past)
        append(OutboxRecord(id_, key, data, event_id, attempts, at, history))
    return records


def _insert_row(event: Enqueueable, at: float) -> tuple[Any, ...]:
    """The values of one :data:`_INSERT`: an encoded event is checked by SQLite."""
    key = event.key
    head = (key.destination, key.event_source, key.event_source_id, key.test_event_code)
    if isinstance(event, EncodedEvent):
        return (*head, None, event.data_json, at, True, None)
    data, event_id = event_fields(event)
    return (*head, event_id, data, at, False, dedup_identity(event))


def _plain_row(event: Enqueueable, at: float) -> tuple[Any, ...]:
    """The values of one :data:`_PLAIN_ROW` and (at index 5) the event's text, encoded
    (or checked) here; the identity of idempotent enqueue last."""
    key = event.key
    data, event_id = event_fields(event)
    return (
        key.destination, key.event_source, key.event_source_id, key.test_event_code,
        event_id, data, at, at, at, dedup_identity(event),
    )  # fmt: skip


def _chunks(count: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` pieces covering ``range(count)`` in order: full pieces of
    :data:`_ROWS_PER_INSERT`, then the rest by powers of two (few distinct sizes)."""
    start = 0
    while count - start >= _ROWS_PER_INSERT:
        yield start, _ROWS_PER_INSERT
        start += _ROWS_PER_INSERT
    size = _ROWS_PER_INSERT
    while start < count:
        size //= 2
        if count - start >= size:
            yield start, size
            start += size


def _insert_plain(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> range:
    """Insert :func:`_plain_row` rows and their texts; the ids they got, in row order."""
    for start, size in _chunks(len(rows)):
        # Every value but the text (index 5), which goes to outbox_data.
        values = chain.from_iterable(row[:5] + row[6:] for row in rows[start : start + size])
        conn.execute(_PLAIN_INSERT + ",".join((_PLAIN_ROW,) * size), tuple(values))
    last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    # AUTOINCREMENT under the write lock hands out consecutive ids, in VALUES order.
    ids = range(last - len(rows) + 1, last + 1)
    texts = [row[5] for row in rows]
    for start, size in _chunks(len(rows)):
        pairs = zip(ids[start : start + size], texts[start : start + size], strict=True)
        conn.execute(_DATA_INSERT + ",".join(("(?,?)",) * size), tuple(chain.from_iterable(pairs)))
    return ids


def _not_an_object(events: Sequence[Enqueueable]) -> str:
    """Which encoded event failed SQLite's check (the rare path, so checked in Python)."""
    for position, event in enumerate(events):
        if isinstance(event, EncodedEvent):
            try:
                event_fields(event)
            except ValueError as error:
                return f"event {position} of the enqueue: {error}"
    return "an encoded event is not one JSON object"


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


def _key_params(key: BatchKey) -> dict[str, Any]:
    return {
        "destination": key.destination,
        "event_source": key.event_source,
        "event_source_id": key.event_source_id,
        "test_event_code": key.test_event_code,
    }


class OutboxSchemaError(RuntimeError):
    """The file cannot serve as this version's outbox (unknown schema version, no WAL)."""


# The identities of a chunk that are live or were delivered since ``:since``. ``+state``
# keeps the planner off the state index: with it, SQLite scans every live row for each
# chunk, so enqueue turns quadratic in the backlog when delivery falls behind (34 ms a
# chunk at 88,000 live rows, against 2.5 ms by the dedup index).
_KNOWN_IDENTITIES: Final = (
    "SELECT dedup FROM outbox WHERE dedup IN (SELECT value FROM json_each(:ids))"
    " AND +state = 'live' UNION SELECT dedup FROM delivered_keys WHERE dedup IN"
    " (SELECT value FROM json_each(:ids)) AND delivered_at >= :since"
)


class SQLiteOutbox:
    """An :class:`~cdp_tiktok.delivery.outbox.Outbox` in one SQLite file.

    Safe to share between processes (each opens its own ``SQLiteOutbox``) and between
    threads of one process (calls are serialized on one connection).
    """

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        with located(self.path, "outbox", SETTING):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_ms / 1000,
            )
        try:
            with located(self.path, "outbox", SETTING):
                self._setup(busy_timeout_ms)
        except BaseException:
            self._conn.close()
            raise

    def _setup(self, busy_timeout_ms: int) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise OutboxSchemaError(f"{self.path}: cannot use WAL journaling (got {mode!r})")
        # FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
        with self._write():
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxSchemaError(
                    f"{self.path}: outbox schema version {version}, this version of "
                    f"cdp_tiktok understands up to {SCHEMA_VERSION}"
                )
            if version == 0:
                _run_script(conn, _SCHEMA)
                version = 1
            while version < SCHEMA_VERSION:
                _run_script(conn, _MIGRATIONS[version])
                version += 1
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        """The schema version of the file (migrated to :data:`SCHEMA_VERSION` on open)."""
        with self._read() as conn:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return version

    def __repr__(self) -> str:
        return f"SQLiteOutbox({str(self.path)!r})"

    # -- transactions ---------------------------------------------------------------

    def _write(self) -> _Transaction:
        return _Transaction(self._conn, self._lock, "BEGIN IMMEDIATE", self.path)

    def _read(self) -> _Transaction:
        # A deferred transaction gives one consistent snapshot for multi-query reads.
        return _Transaction(self._conn, self._lock, "BEGIN", self.path)

    # -- enqueue and claim ----------------------------------------------------------

    def enqueue(
        self,
        events: Sequence[Enqueueable],
        *,
        now: float | None = None,
        dedup_seconds: float = 0.0,
    ) -> list[int]:
        """Store ``events`` as pending records in one durable transaction; return their ids.

        All or nothing: an event that is not JSON raises ``ValueError`` (or ``TypeError``)
        and nothing is stored. With ``dedup_seconds`` the enqueue is idempotent (see the
        protocol): known identities are looked up in the same transaction.
        """
        if not events:
            return []
        at = time.time() if now is None else now
        dedup = dedup_seconds > 0
        if dedup or not _SQL_CHECKS_JSON or not any(type(e) is EncodedEvent for e in events):
            # Everything encoded and checked before the transaction (the intake's case).
            plain = [_plain_row(e, at) for e in events]
            with self._write() as conn:
                if dedup:
                    plain = self._new_rows(conn, plain, at - dedup_seconds)
                return list(_insert_plain(conn, plain)) if plain else []
        # Encoded events are checked inside the transaction, by SQLite's JSON parser.
        rows = [_insert_row(e, at) for e in events]
        with self._write() as conn:
            inserted = conn.executemany(_INSERT, rows).rowcount
            if inserted != len(rows):
                raise ValueError(_not_an_object(events))  # rolls the transaction back
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            # AUTOINCREMENT under the write lock hands out consecutive ids.
            ids = range(last - len(rows) + 1, last + 1)
            conn.executemany(
                "INSERT INTO outbox_data (id, data) VALUES (?, ?)",
                zip(ids, map(itemgetter(5), rows), strict=True),
            )
        return list(ids)

    @staticmethod
    def _new_rows(
        conn: sqlite3.Connection, rows: list[tuple[Any, ...]], since: float
    ) -> list[tuple[Any, ...]]:
        """``rows`` without those whose identity is live or was delivered since ``since``."""
        identities = _compact([row[-1] for row in rows if row[-1] is not None])
        known = {
            value
            for (value,) in conn.execute(_KNOWN_IDENTITIES, {"ids": identities, "since": since})
        }
        return without_known(rows, [row[-1] for row in rows], known)

    def claim(
        self,
        worker: str,
        limit: int,
        lease_seconds: float,
        *,
        key: BatchKey | None = None,
        now: float | None = None,
    ) -> list[OutboxRecord]:
        """Lease up to ``limit`` ready records to ``worker`` in one statement; see the protocol."""
        if limit <= 0:
            return []
        at = time.time() if now is None else now
        params: dict[str, Any] = {
            "now": at,
            "until": at + lease_seconds,
            "worker": worker,
            "limit": limit,
        }
        where = _READY
        if key is not None:
            where += f" AND {_KEY_MATCH}"
            params.update(_key_params(key))
        select = (
            f"SELECT {_RECORD_COLUMNS} FROM {_WITH_DATA} WHERE {where}"
            " ORDER BY next_attempt_at, outbox.id LIMIT :limit"
        )
        # Select, then lease by id, inside one BEGIN IMMEDIATE transaction: no other
        # writer runs in between, so this is as atomic as UPDATE ... RETURNING, and
        # faster (RETURNING materializes every row before handing it back).
        with self._write() as conn:
            rows = conn.execute(select, params).fetchall()
            if rows:
                params["ids"] = _compact([row[0] for row in rows])
                conn.execute(
                    "UPDATE outbox SET ready_at = IIF(lease_owner IS NULL, next_attempt_at,"
                    " ready_at), lease_owner = :worker, next_attempt_at = :until"
                    f" WHERE {_IDS}",
                    params,
                )
        return _records(rows)

    def ready_keys(self, *, now: float | None = None) -> list[BatchKey]:
        """The distinct batch keys with claimable records, in a stable order."""
        at = time.time() if now is None else now
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT DISTINCT {_KEY_COLUMNS} FROM outbox WHERE {_READY}"
                f" ORDER BY {_KEY_COLUMNS}",
                {"now": at},
            ).fetchall()
        return [_key(row, 0) for row in rows]

    def next_ready_at(self) -> float | None:
        """The earliest retry time or lease expiry; ``None`` when nothing is live."""
        with self._read() as conn:
            value = conn.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'live'"
            ).fetchone()[0]
        return None if value is None else float(value)

    # -- settling -------------------------------------------------------------------

    def _settle(
        self, set_clause: str, ids: Sequence[int], worker: str | None, **params: Any
    ) -> int:
        if not ids:
            return 0
        sql = f"UPDATE outbox SET {set_clause} WHERE {_IDS} AND {_GUARD[worker is not None]}"
        with self._write() as conn:
            cursor = conn.execute(sql, {"ids": _compact(list(ids)), "worker": worker, **params})
        count: int = cursor.rowcount
        return count

    def mark_delivered(
        self, ids: Sequence[int], attempt: Attempt, *, worker: str | None = None
    ) -> int:
        """Delete the records as delivered and count them; return how many."""
        if not ids:
            return 0
        where = f"{_IDS} AND {_GUARD[worker is not None]}"
        params = {"ids": _compact(list(ids)), "worker": worker, "at": attempt.at}
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO delivered_keys (dedup, delivered_at)"
                f" SELECT dedup, :at FROM outbox WHERE {where} AND dedup IS NOT NULL",
                params,
            )
            count: int = conn.execute(f"DELETE FROM outbox WHERE {where}", params).rowcount
            conn.execute("UPDATE counters SET value = value + ? WHERE name = 'delivered'", (count,))
            conn.execute(
                "DELETE FROM delivered_keys WHERE delivered_at < ?",
                (attempt.at - DELIVERED_KEYS_RETENTION,),
            )
        return count

    def mark_retry(
        self,
        ids: Sequence[int],
        attempt: Attempt,
        not_before: float,
        *,
        worker: str | None = None,
    ) -> int:
        """Make the records pending again from ``not_before``, recording ``attempt``."""
        return self._settle(
            "lease_owner = NULL, attempts = attempts + 1,"
            " history = json_insert(history, '$[#]', json(:attempt)),"
            " next_attempt_at = :not_before, ready_at = :not_before",
            ids,
            worker,
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
        """Move the records to the dead letters with ``reason`` (and ``attempt``)."""
        history = (
            "history"
            if attempt is None
            else "json_insert(history, '$[#]', json(:attempt)), attempts = attempts + 1"
        )
        return self._settle(
            f"state = 'dead', lease_owner = NULL, reason = :reason, dead_at = :dead_at,"
            f" history = {history}",
            ids,
            worker,
            attempt=None if attempt is None else _compact(attempt.as_dict()),
            reason=reason,
            dead_at=attempt.at if attempt is not None else time.time(),
        )

    def release(self, ids: Sequence[int], *, worker: str | None = None) -> int:
        """Give leases back without counting an attempt; the records are ready again."""
        if not ids:
            return 0
        guard = "lease_owner = :worker" if worker is not None else "lease_owner IS NOT NULL"
        sql = (
            "UPDATE outbox SET lease_owner = NULL, next_attempt_at = ready_at"
            f" WHERE {_IDS} AND +state = 'live' AND {guard}"
        )
        with self._write() as conn:
            count: int = conn.execute(sql, {"ids": _compact(list(ids)), "worker": worker}).rowcount
        return count

    # -- inspection -----------------------------------------------------------------

    def stats(self, *, now: float | None = None) -> OutboxStats:
        """Counts by state at ``now``; see :class:`~cdp_tiktok.delivery.outbox.OutboxStats`."""
        at = time.time() if now is None else now
        with self._read() as conn:
            counts = dict.fromkeys(("pending", "leased", "dead", "held"), 0)
            for state, leased, later, count in conn.execute(
                "SELECT state, lease_owner IS NOT NULL, next_attempt_at > ?, COUNT(*)"
                " FROM outbox GROUP BY 1, 2, 3",
                (at,),
            ):
                if state == "dead":
                    counts["dead"] += count
                elif leased and later:
                    counts["leased"] += count
                else:
                    counts["pending"] += count
                    if later:
                        counts["held"] += count
            delivered = conn.execute(
                "SELECT value FROM counters WHERE name = 'delivered'"
            ).fetchone()[0]
        return OutboxStats(delivered=delivered, **counts)

    def undelivered(self) -> int:
        """The records not delivered nor dead: ``stats().pending + stats().leased`` (held
        records included), counted on the ``(state, next_attempt_at)`` index alone, which
        is a tenth of the cost of :meth:`stats` (what the intake's backlog check reads)."""
        with self._read() as conn:
            count: int = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE state = 'live'"
            ).fetchone()[0]
        return count

    def status(self, *, now: float | None = None) -> list[DestinationStatus]:
        """Per destination: counts by state, oldest age, stop reason (one snapshot)."""
        at = time.time() if now is None else now
        with self._read() as conn:
            stops = {
                name: (reason, float(when))
                for name, reason, when in conn.execute(
                    "SELECT destination, reason, stopped_at FROM stops"
                )
            }
            builder = StatusBuilder(stops)
            for destination, dead, leased, later, count, oldest in conn.execute(
                "SELECT destination, state = 'dead', lease_owner IS NOT NULL,"
                " next_attempt_at > ?, COUNT(*), MIN(enqueued_at) FROM outbox GROUP BY 1, 2, 3, 4",
                (at,),
            ):
                builder.add(
                    destination,
                    dead=bool(dead),
                    leased=bool(leased),
                    later=bool(later),
                    count=count,
                    oldest=oldest,
                )
        return builder.result()

    def stop_destination(
        self, destination: str, reason: str | None, *, now: float | None = None
    ) -> None:
        """Record (or with ``None`` clear) why ``destination`` is stopped."""
        with self._write() as conn:
            if reason is None:
                conn.execute("DELETE FROM stops WHERE destination = ?", (destination,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO stops (destination, reason, stopped_at)"
                    " VALUES (?, ?, ?)",
                    (destination, reason, time.time() if now is None else now),
                )

    _WAITING = (
        "destination = :destination AND state = 'live'"
        " AND NOT (lease_owner IS NOT NULL AND next_attempt_at > :now)"
    )

    def release_destination(self, destination: str, *, now: float | None = None) -> int:
        """Clear the stop and make the destination's waiting records ready at ``now``."""
        params = {"destination": destination, "now": time.time() if now is None else now}
        with self._write() as conn:
            conn.execute("DELETE FROM stops WHERE destination = :destination", params)
            count: int = conn.execute(
                "UPDATE outbox SET lease_owner = NULL, next_attempt_at = :now, ready_at = :now"
                f" WHERE {self._WAITING}",
                params,
            ).rowcount
        return count

    def purge_destination(self, destination: str, *, now: float | None = None) -> int:
        """Delete the destination's pending and waiting records; clear its stop."""
        params = {"destination": destination, "now": time.time() if now is None else now}
        with self._write() as conn:
            conn.execute("DELETE FROM stops WHERE destination = :destination", params)
            count: int = conn.execute(f"DELETE FROM outbox WHERE {self._WAITING}", params).rowcount
        return count

    def dead_letters(self, *, limit: int | None = None) -> Iterator[DeadLetter]:
        """Dead letters, oldest death first (read in one snapshot), at most ``limit``."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_DEAD_COLUMNS} FROM {_WITH_DATA} WHERE state = 'dead'"
                " ORDER BY dead_at, outbox.id LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return (_dead_letter(row) for row in rows)

    def get_dead_letter(self, id: int) -> DeadLetter | None:
        """One dead letter by id, or ``None``."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_DEAD_COLUMNS} FROM {_WITH_DATA} WHERE state = 'dead' AND outbox.id = ?",
                (id,),
            ).fetchone()
        return None if row is None else _dead_letter(row)

    def replay(self, ids: Sequence[int] | None = None, *, now: float | None = None) -> int:
        """Move dead letters back to pending, ready at ``now``, attempts reset."""
        at = time.time() if now is None else now
        where = "state = 'dead'" + ("" if ids is None else f" AND {_IDS}")
        sql = (
            "UPDATE outbox SET state = 'live', attempts = 0, reason = NULL, dead_at = NULL,"
            f" next_attempt_at = :now, ready_at = :now WHERE {where}"
        )
        with self._write() as conn:
            count: int = conn.execute(
                sql, {"now": at, "ids": None if ids is None else _compact(list(ids))}
            ).rowcount
        return count

    def purge(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters for good; return how many."""
        where = "state = 'dead'" + ("" if ids is None else f" AND {_IDS}")
        with self._write() as conn:
            count: int = conn.execute(
                f"DELETE FROM outbox WHERE {where}",
                {"ids": None if ids is None else _compact(list(ids))},
            ).rowcount
        return count

    def close(self) -> None:
        """Close the connection; unsettled leases expire on their own."""
        with self._lock:
            self._conn.close()


def _run_script(conn: sqlite3.Connection, script: str | tuple[str, ...]) -> None:
    """Run a script of statements split on ``;`` (or a tuple of whole statements)."""
    statements = script.split(";") if isinstance(script, str) else script
    for statement in statements:
        if statement.strip():
            conn.execute(statement)


class _Transaction:
    """``with`` block: one explicit transaction on a shared connection, under a lock.

    SQLite errors (disk full, damaged file, read-only directory) leave as a
    :class:`~cdp_tiktok.storage.StorageError` naming the file, after the rollback."""

    __slots__ = ("_begin", "_conn", "_lock", "_path")

    def __init__(
        self, conn: sqlite3.Connection, lock: threading.Lock, begin: str, path: Path
    ) -> None:
        self._conn = conn
        self._lock = lock
        self._begin = begin
        self._path = path

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            with located(self._path, "outbox", SETTING):
                self._conn.execute(self._begin)
        except BaseException:
            self._lock.release()
            raise
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.Error as failed:  # e.g. disk full at commit
                    self._rollback()
                    raise storage_error(failed, self._path, "outbox", SETTING) from failed
            else:
                self._rollback()
        finally:
            self._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise storage_error(exc, self._path, "outbox", SETTING) from exc

    def _rollback(self) -> None:
        # SQLite may have rolled back already (e.g. after SQLITE_FULL); the error that
        # caused the rollback is the one worth reporting, not a failing ROLLBACK.
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` url (relative to the working directory unless
    absolute), or ``None`` for any other url."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def open_sqlite_outbox(url: str) -> SQLiteOutbox:
    """The outbox of a ``sqlite:///path`` url, creating the file and its directory."""
    path = sqlite_path(url)
    if path is None:
        raise ValueError(
            f"unsupported outbox url {url!r}; use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    return SQLiteOutbox(path)


@hookimpl
def cdp_register_outbox_backends(register: Any) -> None:
    """The built-in ``sqlite://`` outbox."""
    register("sqlite", open_sqlite_outbox)
