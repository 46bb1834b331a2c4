"""Identity enrichment: hashed match keys learnt from identify calls, reused later.

An identify call stores the *hashed* ``email``, ``phone`` and ``external_id`` of its
``userId`` and ``anonymousId`` (and links the two); an alias call links two ids. A later
track/page/screen event that lacks a key gets it from the store (:func:`enrich_user`);
keys present on the event always win.

Privacy guarantees, for every store:

* only SHA-256 hex match keys are accepted (anything else raises ``ValueError`` without
  echoing the value), so no raw email, phone or external id is ever stored;
* ids are stored as SHA-256 of the id (never the id itself);
* entries expire ``ttl_seconds`` after they were last written;
* :meth:`IdentityStore.forget` deletes everything known about a person: the given ids
  and every id linked to them.

Stores are found by url scheme (:func:`cdp_tiktok.backends.open_identity_store`):
``sqlite:///path`` (default; one file, WAL, safe for several processes), ``memory://``
(tests) and ``postgresql://`` (:mod:`cdp_tiktok.postgres_identity`, many machines). A
plugin adds others (e.g. Redis) with the ``cdp_register_identity_stores`` hook.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from cdp_tiktok.identity_memo import LookupMemo
from cdp_tiktok.matchkeys import LIST_KEYS, is_sha256_hex, sha256_hex
from cdp_tiktok.storage import located, storage_error

#: The match keys the store keeps (hashed lists).
STORED_KEYS: Final = LIST_KEYS
#: At most this many values per key are returned by a lookup (the newest first).
MAX_VALUES_PER_KEY: Final = 10
#: A lookup follows links at most this far (guards against pathological alias chains).
MAX_LINKED_IDS: Final = 50
#: Expired entries are purged every this many writes (and when a SQLite store opens).
PURGE_EVERY: Final = 1000
WAL_CHECKPOINT_PAGES: Final = 10_000
"""Pages (4 KiB) the SQLite store's write-ahead log grows by between checkpoints."""
WAL_KEEP_BYTES: Final = 64 * 1024 * 1024
"""What the write-ahead log file is cut back to after a checkpoint."""
_ID_NAMESPACE = "cdp_tiktok.identity:"
_NEVER: Final = float("inf")
SETTING: Final = "the identity setting (--identity, CDP_TIKTOK_IDENTITY)"
"""What chooses the identity store file, for error messages."""


class IdentityStore(Protocol):
    """Stores hashed match keys per (hashed) id; see the module docstring for guarantees."""

    def remember(
        self,
        user_id: str | None,
        anonymous_id: str | None,
        keys: Mapping[str, Sequence[str]],
        now: float | None = None,
    ) -> None:
        """Store ``keys`` (64-hex values of email/phone/external_id) for both ids, and
        link the two ids when both are given. Raises ``ValueError`` on a raw value."""
        ...

    def link(self, previous_id: str, user_id: str, now: float | None = None) -> None:
        """Record that ``previous_id`` and ``user_id`` are the same person (alias)."""
        ...

    def lookup(
        self, user_id: str | None, anonymous_id: str | None, now: float | None = None
    ) -> dict[str, list[str]]:
        """Keys known for the ids and their linked ids, not expired; each list newest
        first, de-duplicated, at most :data:`MAX_VALUES_PER_KEY` values; absent keys omitted."""
        ...

    def forget(self, user_id: str | None = None, anonymous_id: str | None = None) -> int:
        """Delete every entry of these ids and of all ids linked to them; return the count."""
        ...

    def close(self) -> None:
        """Release the store's resources; the store is unusable afterwards."""
        ...


@functools.lru_cache(maxsize=1 << 16)
def id_digest(identifier: str) -> str:
    """The stored form of a userId/anonymousId: SHA-256 hex of a namespaced id (memoized:
    the same people come back; a pure function, so every store may share it)."""
    return sha256_hex(_ID_NAMESPACE + identifier)


def id_digests(*ids: str | None) -> list[str]:
    """The stored forms of the given ids, without empty ones and repeats, in the order
    given (every store); a new list each call."""
    digests: list[str] = []
    for identifier in ids:  # a loop: one or two ids per call, cheaper than a dict
        if identifier:
            digest = id_digest(identifier)
            if digest not in digests:
                digests.append(digest)
    return digests


def checked_keys(keys: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """``(key, lower-case hash)`` rows of ``keys``; ``ValueError`` (never echoing a value)
    for a key the store does not keep or a value that is not SHA-256 hex."""
    rows: list[tuple[str, str]] = []
    for key, values in keys.items():
        if key not in STORED_KEYS:
            raise ValueError(f"identity store keeps only {', '.join(STORED_KEYS)}; got {key!r}")
        if isinstance(values, str):
            raise ValueError(f"identity store: {key!r} must be a list of hashed values")
        for value in values:
            if not isinstance(value, str) or not is_sha256_hex(value):
                # never echo the value: it may be a raw identifier
                raise ValueError(f"identity store accepts only SHA-256 hex values for {key!r}")
            rows.append((key, value.lower()))
    return rows


def merge_rows(rows: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Rows in priority order -> de-duplicated, capped lists per key."""
    merged: dict[str, list[str]] = {}
    for key, value in rows:
        values = merged.setdefault(key, [])
        if value not in values and len(values) < MAX_VALUES_PER_KEY:
            values.append(value)
    return merged


def enrich_user(
    user: dict[str, Any], stored: Mapping[str, list[str]]
) -> tuple[dict[str, Any], list[str]]:
    """Fill ``email``, ``phone``, ``external_id`` missing from ``user`` with ``stored``.

    Returns a new user object (``user`` is not modified) and the keys that were filled,
    in :data:`STORED_KEYS` order. A key present on the event (non-empty) always wins.
    """
    enriched = dict(user)
    return enriched, fill_user(enriched, stored)


def fill_user(user: dict[str, Any], stored: Mapping[str, list[str]]) -> list[str]:
    """:func:`enrich_user` in place: fill ``user``'s missing (absent or empty) ``email``,
    ``phone``, ``external_id`` with copies of ``stored``'s lists (``stored`` is never
    shared with ``user``); return the keys filled, in :data:`STORED_KEYS` order."""
    filled: list[str] = []
    for key in STORED_KEYS:
        values = stored.get(key)
        if values and not user.get(key):
            user[key] = list(values)
            filled.append(key)
    return filled


# --- in-memory store --------------------------------------------------------------------


class MemoryIdentityStore:
    """An :class:`IdentityStore` in process memory (tests, short-lived tools); thread-safe."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        # node -> (key, value) -> last written
        self._keys: dict[str, dict[tuple[str, str], float]] = {}
        # node -> linked node -> last written
        self._links: dict[str, dict[str, float]] = {}
        self._writes = 0
        self._memo = LookupMemo()
        # no entry or link was written before this (a bound): purge skips its scan
        self._oldest = _NEVER

    def remember(
        self,
        user_id: str | None,
        anonymous_id: str | None,
        keys: Mapping[str, Sequence[str]],
        now: float | None = None,
    ) -> None:
        """See :meth:`IdentityStore.remember`."""
        rows = checked_keys(keys)
        at = time.time() if now is None else now
        nodes = id_digests(user_id, anonymous_id)
        with self._lock:
            for node in nodes:
                entries = self._keys.setdefault(node, {})
                for row in rows:
                    entries[row] = at
            if len(nodes) == 2:
                self._link(nodes[0], nodes[1], at)
            if at < self._oldest:
                self._oldest = at
            self._memo.touch(nodes)
            self._writes += 1
            due = self._writes % PURGE_EVERY == 0
        if due:
            self.purge(at)

    def purge(self, now: float | None = None) -> int:
        """Delete expired entries and links; return how many were deleted. Without a
        look at each entry when none can have expired (nothing written before ``since``):
        the periodic purge of a store that only grows costs nothing."""
        since = (time.time() if now is None else now) - self._ttl
        count = 0
        with self._lock:
            if since <= self._oldest:
                return 0
            oldest = _NEVER
            for table in (self._keys, self._links):
                for node in list(table):
                    entries: dict[Any, float] = table[node]
                    for item in [i for i, at in entries.items() if at < since]:
                        del entries[item]
                        count += 1
                    if not entries:
                        del table[node]
                    elif (first := min(entries.values())) < oldest:
                        oldest = first
            self._oldest = oldest
            if count:
                self._memo.clear()
        return count

    def link(self, previous_id: str, user_id: str, now: float | None = None) -> None:
        """See :meth:`IdentityStore.link`."""
        nodes = id_digests(previous_id, user_id)
        if len(nodes) == 2:
            at = time.time() if now is None else now
            with self._lock:
                self._link(nodes[0], nodes[1], at)
                if at < self._oldest:
                    self._oldest = at
                self._memo.touch(nodes)

    def _link(self, a: str, b: str, at: float) -> None:
        self._links.setdefault(a, {})[b] = at
        self._links.setdefault(b, {})[a] = at

    def _component(self, start: list[str], since: float) -> tuple[list[str], float]:
        """The ids linked to ``start`` by links written at or after ``since`` (at most
        :data:`MAX_LINKED_IDS`), and the oldest such link of theirs (``inf``: none)."""
        seen = list(start)
        links = self._links
        oldest = _NEVER
        for node in seen:
            linked = links.get(node)
            if not linked:
                continue
            for other, at in linked.items():
                if at >= since:
                    if at < oldest:
                        oldest = at
                    if other not in seen and len(seen) < MAX_LINKED_IDS:
                        seen.append(other)
        return seen, oldest

    def lookup(
        self, user_id: str | None, anonymous_id: str | None, now: float | None = None
    ) -> dict[str, list[str]]:
        """See :meth:`IdentityStore.lookup`; answered from a :class:`LookupMemo` while
        nothing it read was written or expired (the answer is shared: read it only)."""
        since = (time.time() if now is None else now) - self._ttl
        ids = (user_id, anonymous_id)
        keys = self._keys
        rows: list[tuple[str, str]] = []
        with self._lock:
            memo = self._memo
            answer = memo.answer(ids, since)
            if answer is not None:
                return answer
            start = id_digests(user_id, anonymous_id)
            # Most ids of a stream have no links (one device, never identified): no walk.
            links = self._links
            nodes, oldest = start, _NEVER
            for node in start:
                if node in links:
                    nodes, oldest = self._component(start, since)
                    break
            for node in nodes:
                entries = keys.get(node)
                if not entries:
                    continue
                if len(entries) == 1:
                    ((row, at),) = entries.items()
                    if at >= since:
                        rows.append(row)
                        if at < oldest:
                            oldest = at
                    continue
                fresh = sorted([(-at, row) for row, at in entries.items() if at >= since])
                if fresh:
                    rows.extend([row for _, row in fresh])
                    if -fresh[-1][0] < oldest:
                        oldest = -fresh[-1][0]
            answer = merge_rows(rows) if rows else {}
            memo.keep(ids, answer, nodes, since, oldest)
        return answer

    def forget(self, user_id: str | None = None, anonymous_id: str | None = None) -> int:
        """See :meth:`IdentityStore.forget`."""
        with self._lock:
            self._memo.clear()
            nodes, _ = self._component(id_digests(user_id, anonymous_id), float("-inf"))
            count = 0
            for node in nodes:
                count += len(self._keys.pop(node, {}))
                for other in self._links.pop(node, {}):
                    count += 1  # a link is a row each way, as the SQLite store counts it
                    if self._links.get(other, {}).pop(node, None) is not None:
                        count += 1
            return count

    def close(self) -> None:
        """Drop everything held in memory."""
        with self._lock:
            self._keys.clear()
            self._links.clear()
            self._memo.clear()


# --- SQLite store -----------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identity_keys (
    node TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    written REAL NOT NULL,
    PRIMARY KEY (node, key, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identity_keys_written ON identity_keys (written);
CREATE TABLE IF NOT EXISTS identity_links (
    node TEXT NOT NULL,
    other TEXT NOT NULL,
    written REAL NOT NULL,
    PRIMARY KEY (node, other)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identity_links_written ON identity_links (written);
"""
_UPSERT_KEY = (
    "INSERT INTO identity_keys (node, key, value, written) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (node, key, value) DO UPDATE SET written = excluded.written"
)
_UPSERT_LINK = (
    "INSERT INTO identity_links (node, other, written) VALUES (?, ?, ?) "
    "ON CONFLICT (node, other) DO UPDATE SET written = excluded.written"
)
# ORDER BY: the primary key's order (no sort); a lookup that reaches MAX_LINKED_IDS keeps
# the same ids whichever plan SQLite picks, and the cache (identity_cache.py) can follow it.
_SELECT_LINKS = "SELECT other FROM identity_links WHERE node = ? AND written >= ? ORDER BY other"
_SELECT_KEYS = (
    "SELECT key, value FROM identity_keys WHERE node = ? AND written >= ? "
    "ORDER BY written DESC, key, value"
)


class SQLiteIdentityStore:
    """An :class:`IdentityStore` in one SQLite file (WAL; ``busy_timeout`` so several
    processes can share it). Thread-safe within a process."""

    def __init__(self, path: str | Path, ttl_seconds: float, busy_timeout_ms: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self.ttl_seconds: Final = ttl_seconds
        self.path = Path(path)
        self._lock = _StoreLock(self.path)
        self._writes = 0
        with located(self.path, "identity store", SETTING):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path),
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        try:
            with located(self.path, "identity store", SETTING):
                self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
                # A checkpoint (with its fsync) every WAL_CHECKPOINT_PAGES instead of
                # SQLite's 1,000: the flushes of a few hundred rows keyed by scattered
                # digests that send makes before each chunk mostly skip it; the WAL file
                # is cut back to WAL_KEEP_BYTES after one.
                self._db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
                self._db.execute(f"PRAGMA journal_size_limit = {WAL_KEEP_BYTES}")
                # forget() must not leave deleted hashes in free pages
                self._db.execute("PRAGMA secure_delete = ON")
                self._db.executescript(_SCHEMA)
            self.purge()
        except BaseException:
            self._db.close()
            raise

    def _rollback(self) -> None:
        # SQLite may have rolled back already (e.g. after SQLITE_FULL); keep that error.
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _write(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self._db.executemany(sql, params)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._writes += 1
            due = self._writes % PURGE_EVERY == 0
        if due:
            self.purge()

    def remember(
        self,
        user_id: str | None,
        anonymous_id: str | None,
        keys: Mapping[str, Sequence[str]],
        now: float | None = None,
    ) -> None:
        """See :meth:`IdentityStore.remember`."""
        rows = checked_keys(keys)
        at = time.time() if now is None else now
        nodes = id_digests(user_id, anonymous_id)
        statements = [(_UPSERT_KEY, [(n, k, v, at) for n in nodes for k, v in rows])]
        if len(nodes) == 2:
            statements.append((_UPSERT_LINK, _link_rows(nodes[0], nodes[1], at)))
        if rows or len(nodes) == 2:
            self._write(statements)

    def link(self, previous_id: str, user_id: str, now: float | None = None) -> None:
        """See :meth:`IdentityStore.link`."""
        nodes = id_digests(previous_id, user_id)
        if len(nodes) == 2:
            at = time.time() if now is None else now
            self._write([(_UPSERT_LINK, _link_rows(nodes[0], nodes[1], at))])

    def write_rows(
        self, keys: Sequence[tuple[str, str, str, float]], links: Sequence[tuple[str, str, float]]
    ) -> None:
        """Upsert ``(node, key, value, written)`` and ``(node, other, written)`` rows (ids
        already digested, values already checked) in one transaction, later rows winning;
        for :mod:`cdp_tiktok.identity_cache`, which counts writes for purging itself."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_UPSERT_KEY, keys)
                self._db.executemany(_UPSERT_LINK, links)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def rows_of(self, nodes: Sequence[str]) -> list[tuple[str, str | None, str, float]]:
        """Every stored row of the id digests ``nodes``, expired or not, in one statement:
        ``(node, key, value, written)`` for a key, ``(node, None, other, written)`` for a
        link."""
        marks = ",".join("?" * len(nodes))
        with self._lock:
            rows: list[tuple[str, str | None, str, float]] = self._db.execute(
                f"SELECT node, key, value, written FROM identity_keys WHERE node IN ({marks}) "
                "UNION ALL SELECT node, NULL, other, written FROM identity_links "
                f"WHERE node IN ({marks})",
                (*nodes, *nodes),
            ).fetchall()
        return rows

    def all_rows(self, limit: int) -> list[tuple[str, str | None, str, float]] | None:
        """Every row of the file as :meth:`rows_of` gives them, or ``None`` when there are
        more than ``limit``."""
        with self._lock:
            rows: list[tuple[str, str | None, str, float]] = self._db.execute(
                "SELECT node, key, value, written FROM identity_keys "
                "UNION ALL SELECT node, NULL, other, written FROM identity_links LIMIT ?",
                (limit + 1,),
            ).fetchall()
        return rows if len(rows) <= limit else None

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes whenever another connection (this
        process or another) committed to the file since the last call; own commits do not
        change it."""
        with self._lock:
            version: int = self._db.execute("PRAGMA data_version").fetchone()[0]
        return version

    def _component(self, start: list[str], since: float) -> list[str]:
        seen = list(start)
        for node in seen:
            for (other,) in self._db.execute(_SELECT_LINKS, (node, since)):
                if other not in seen and len(seen) < MAX_LINKED_IDS:
                    seen.append(other)
        return seen

    def lookup(
        self, user_id: str | None, anonymous_id: str | None, now: float | None = None
    ) -> dict[str, list[str]]:
        """See :meth:`IdentityStore.lookup`."""
        since = (time.time() if now is None else now) - self._ttl
        rows: list[tuple[str, str]] = []
        with self._lock:
            for node in self._component(id_digests(user_id, anonymous_id), since):
                rows.extend(self._db.execute(_SELECT_KEYS, (node, since)))
        return merge_rows(rows)

    def forget(self, user_id: str | None = None, anonymous_id: str | None = None) -> int:
        """See :meth:`IdentityStore.forget`."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                nodes = self._component(id_digests(user_id, anonymous_id), float("-inf"))
                count = 0
                for node in nodes:
                    count += self._db.execute(
                        "DELETE FROM identity_keys WHERE node = ?", (node,)
                    ).rowcount
                    count += self._db.execute(
                        "DELETE FROM identity_links WHERE node = ? OR other = ?", (node, node)
                    ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        self.checkpoint()
        return count

    def purge(self, now: float | None = None) -> int:
        """Delete expired entries and links; return how many rows were deleted."""
        since = (time.time() if now is None else now) - self._ttl
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                count = self._db.execute(
                    "DELETE FROM identity_keys WHERE written < ?", (since,)
                ).rowcount
                count += self._db.execute(
                    "DELETE FROM identity_links WHERE written < ?", (since,)
                ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return count

    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it, so deleted rows leave the WAL."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


class _StoreLock:
    """The store's lock; an SQLite error inside the block leaves as a
    :class:`~cdp_tiktok.storage.StorageError` naming the file (disk full, damaged file)."""

    __slots__ = ("_lock", "_path")

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._path = path

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise storage_error(exc, self._path, "identity store", SETTING) from exc


def _link_rows(a: str, b: str, at: float) -> list[tuple[Any, ...]]:
    return [(a, b, at), (b, a, at)]
