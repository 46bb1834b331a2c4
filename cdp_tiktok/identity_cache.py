"""A cache with write-behind batching in front of the SQLite identity store.

:class:`CachedIdentityStore` keeps, per id digest it has met, a copy of that id's rows
(hashed keys and links, with when each was written) and answers :meth:`lookup` from it
by the very rules of :class:`~cdp_tiktok.identity.SQLiteIdentityStore` (same expiry,
same link order and cap, same newest-first order and cap per key), so the answer is the
one the store would give. ``remember`` and ``link`` update the copy at once and are
written to the file later, in one transaction per batch.

:meth:`CachedIdentityStore.flush` is the sync point: it writes this connection's buffered
writes in one transaction, then asks SQLite whether another connection committed since
(``PRAGMA data_version``) and if so drops the copy. Every SQLite call releases the GIL
(and waits to take it back while another thread runs), so the copy answers without any
SQL between sync points.

Guarantees:

* Answers equal the uncached store's for the same calls on one connection
  (property-tested), and across connections once the writer has flushed and the reader
  synced (the HTTP intake flushes before it answers and syncs before it maps a group).
* Writes become durable (and visible to other connections and processes) at a sync:
  :meth:`~CachedIdentityStore.flush`, every :data:`FLUSH_EVERY` writes, at the first call
  :data:`SYNC_SECONDS` after the last sync, before ``forget``, ``purge`` and
  ``checkpoint``, in ``close`` (even when it fails), and when the store is garbage
  collected or the interpreter exits without ``close`` (not in a forked child). The
  callers that commit events (``Host.process`` with an outbox, ``cdp-tiktok send``, the
  HTTP intake) flush before each outbox commit.
* Another connection's commits are seen from this connection's next sync on: at the
  latest at the first call :data:`SYNC_SECONDS` after the last one.
* Entries expire exactly as in the store (the copy keeps each row's written time); the
  store's purge still runs every :data:`~cdp_tiktok.identity.PURGE_EVERY` writes.
* Nothing but digests and hashed keys is held, as in the store; at most
  ``max_ids`` ids are kept (then the copy is flushed and dropped).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from cdp_tiktok.identity import (
    MAX_LINKED_IDS,
    PURGE_EVERY,
    SQLiteIdentityStore,
    checked_keys,
    id_digests,
    merge_rows,
)
from cdp_tiktok.identity_memo import LookupMemo

FLUSH_EVERY: Final = 512
"""Buffered writes (remember/link calls) are written to the file at this count at the latest."""
MAX_CACHED_IDS: Final = 100_000
"""At most this many ids are kept in memory (a few hundred bytes each)."""
PRELOAD_ROWS: Final = 50_000
"""A file with at most this many rows is read whole at open: then an id the copy lacks is
known to have no rows, and a new person costs no SQL (until another connection commits)."""
SYNC_SECONDS: Final = 1.0
"""A call this long after the last sync syncs first (bounds staleness and write delay)."""
_EXIT_LOCK_SECONDS: Final = 10.0
_NEVER: Final = float("inf")

KeyRow = tuple[str, str, str, float]
LinkRow = tuple[str, str, float]


class _Node:
    """What the file holds for one id digest (plus this connection's buffered writes)."""

    __slots__ = ("_ordered_keys", "_ordered_links", "keys", "links")

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], float] = {}
        self.links: dict[str, float] = {}
        self._ordered_keys: list[tuple[float, str, str]] | None = None
        self._ordered_links: list[tuple[str, float]] | None = None

    def changed(self) -> None:
        self._ordered_keys = self._ordered_links = None

    def ordered_keys(self) -> list[tuple[float, str, str]]:
        """``(written, key, value)`` in the store's order: newest first, then key, value."""
        if self._ordered_keys is None:
            rows = [(at, key, value) for (key, value), at in self.keys.items()]
            self._ordered_keys = sorted(rows, key=lambda r: (-r[0], r[1], r[2]))
        return self._ordered_keys

    def ordered_links(self) -> list[tuple[str, float]]:
        """``(other, written)`` in the store's order (by ``other``)."""
        if self._ordered_links is None:
            self._ordered_links = sorted(self.links.items())
        return self._ordered_links


class CachedIdentityStore:
    """An :class:`~cdp_tiktok.identity.IdentityStore` answering from memory in front of a
    :class:`~cdp_tiktok.identity.SQLiteIdentityStore` it owns (closed by :meth:`close`);
    thread-safe. See the module docstring for what it guarantees."""

    def __init__(
        self,
        store: SQLiteIdentityStore,
        *,
        flush_every: int = FLUSH_EVERY,
        max_ids: int = MAX_CACHED_IDS,
        sync_seconds: float = SYNC_SECONDS,
        preload_rows: int = PRELOAD_ROWS,
    ) -> None:
        self._store = store
        self.path: Path = store.path
        self._ttl = store.ttl_seconds
        self._flush_every = flush_every
        self._max_ids = max_ids
        self._sync_seconds = sync_seconds
        self._lock = threading.Lock()
        self._nodes: dict[str, _Node] = {}
        self._memo = LookupMemo()
        # Every id with a buffered write is in _nodes (so a lookup never misses one).
        self._pending_keys: dict[tuple[str, str, str], float] = {}
        self._pending_links: dict[tuple[str, str], float] = {}
        self._buffered = 0
        self._writes = 0
        self._version = store.data_version()
        self._synced_at = time.monotonic()
        # True while the copy holds every row of the file: a missing id has none.
        self._complete = False
        # no row of the copy was written before this (a bound): a purge skips its scan
        self._oldest = _NEVER
        preloaded = store.all_rows(preload_rows)
        if preloaded is not None:
            self._add_rows(self._nodes, preloaded)
            self._complete = len(self._nodes) <= max_ids
        self._finalizer = weakref.finalize(
            self,
            _flush_left,
            os.getpid(),
            self._lock,
            store,
            self._pending_keys,
            self._pending_links,
        )

    # --- writes ------------------------------------------------------------------------

    def remember(
        self,
        user_id: str | None,
        anonymous_id: str | None,
        keys: Mapping[str, Sequence[str]],
        now: float | None = None,
    ) -> None:
        """See :meth:`~cdp_tiktok.identity.IdentityStore.remember` (durable at the next
        flush); a raw value raises ``ValueError`` at once and nothing is buffered."""
        rows = checked_keys(keys)
        at = float(time.time() if now is None else now)
        nodes = id_digests(user_id, anonymous_id)
        if not rows and len(nodes) < 2:
            return
        with self._lock:
            self._sync_if_due()
            self._load(nodes)
            for node in nodes:
                entry = self._nodes[node]
                for key, value in rows:
                    entry.keys[key, value] = at
                    self._pending_keys[node, key, value] = at
                entry.changed()
            if at < self._oldest:
                self._oldest = at
            if len(nodes) == 2:
                self._link(nodes[0], nodes[1], at)
            self._memo.touch(nodes)
            self._wrote()

    def link(self, previous_id: str, user_id: str, now: float | None = None) -> None:
        """See :meth:`~cdp_tiktok.identity.IdentityStore.link` (durable at the next flush)."""
        nodes = id_digests(previous_id, user_id)
        if len(nodes) < 2:
            return
        at = float(time.time() if now is None else now)
        with self._lock:
            self._sync_if_due()
            self._load(nodes)
            self._link(nodes[0], nodes[1], at)
            if at < self._oldest:
                self._oldest = at
            self._memo.touch(nodes)
            self._wrote()

    def _link(self, a: str, b: str, at: float) -> None:
        for node, other in ((a, b), (b, a)):
            entry = self._nodes[node]
            entry.links[other] = at
            entry.changed()
            self._pending_links[node, other] = at

    def _wrote(self) -> None:
        self._writes += 1
        self._buffered += 1
        if self._writes % PURGE_EVERY == 0:  # when the uncached store would purge
            self._flush()
            self._purge(time.time())
        elif self._buffered >= self._flush_every:
            self._sync()
        self._bound()

    def flush(self) -> None:
        """Sync: write every buffered remember/link to the file in one transaction (then
        they are durable and other connections see them), and drop the copy if another
        connection committed since the last sync (later lookups see its writes). On an
        error (disk full) the writes stay buffered, for the next flush."""
        with self._lock:
            self._sync()

    def _flush(self) -> None:
        _write_pending(self._store, self._pending_keys, self._pending_links)
        self._buffered = 0

    def _sync(self) -> None:
        self._flush()
        version = self._store.data_version()
        if version != self._version:
            self._drop()  # nothing is buffered now: every row is in the file
            self._version = version
        self._synced_at = time.monotonic()

    def _sync_if_due(self) -> None:
        if time.monotonic() - self._synced_at >= self._sync_seconds:
            self._sync()

    # --- reads -------------------------------------------------------------------------

    def lookup(
        self, user_id: str | None, anonymous_id: str | None, now: float | None = None
    ) -> dict[str, list[str]]:
        """See :meth:`~cdp_tiktok.identity.IdentityStore.lookup`; equal to the uncached
        store's answer, including this connection's buffered writes and at least the
        other connections' commits made before the last sync. Answered from a
        :class:`~cdp_tiktok.identity_memo.LookupMemo` while nothing it read changed (the
        answer is shared: read it only)."""
        since = (time.time() if now is None else now) - self._ttl
        ids = (user_id, anonymous_id)
        rows: list[tuple[str, str]] = []
        with self._lock:
            self._sync_if_due()
            answer = self._memo.answer(ids, since)
            if answer is not None:
                return answer
            seen = id_digests(user_id, anonymous_id)
            oldest = _NEVER
            nodes = self._nodes
            index = 0
            while index < len(seen):  # the store's breadth-first walk, over the copy
                node = seen[index]
                if node not in nodes:
                    self._load(seen[index:])
                for other, at in nodes[node].ordered_links():
                    if at >= since:
                        if at < oldest:
                            oldest = at
                        if other not in seen and len(seen) < MAX_LINKED_IDS:
                            seen.append(other)
                index += 1
            for node in seen:
                for at, key, value in nodes[node].ordered_keys():
                    if at < since:
                        break
                    rows.append((key, value))
                    if at < oldest:
                        oldest = at
            answer = merge_rows(rows)
            self._memo.keep(ids, answer, seen, since, oldest)
            self._bound()
        return answer

    def _load(self, nodes: Sequence[str]) -> None:
        missing = [node for node in dict.fromkeys(nodes) if node not in self._nodes]
        if not missing:
            return
        fresh = {node: _Node() for node in missing}
        if not self._complete:
            self._add_rows(fresh, self._store.rows_of(missing))
        self._nodes.update(fresh)

    def _add_rows(
        self, nodes: dict[str, _Node], rows: Sequence[tuple[str, str | None, str, float]]
    ) -> None:
        oldest = self._oldest
        for node, key, value, at in rows:
            entry = nodes.get(node)
            if entry is None:
                entry = nodes[node] = _Node()
            if key is None:
                entry.links[value] = at
            else:
                entry.keys[key, value] = at
            if at < oldest:
                oldest = at
        self._oldest = oldest

    def _drop(self) -> None:
        """Forget the copy (nothing may be buffered): later ids are read from the file."""
        self._nodes.clear()
        self._memo.clear()
        self._complete = False
        self._oldest = _NEVER

    def _bound(self) -> None:
        if len(self._nodes) > self._max_ids:
            self._flush()
            self._drop()

    def _purge(self, now: float) -> int:
        """The store's purge, and the same deletion in the copy (which stays exact);
        the copy is not looked through when none of its rows can have expired (the
        periodic purge of a store that only grows, a CRM import, costs one statement)."""
        count = self._store.purge(now)
        since = now - self._ttl
        if since <= self._oldest:
            return count
        oldest = _NEVER
        deleted = False
        for entry in self._nodes.values():
            keys = [row for row, at in entry.keys.items() if at < since]
            links = [other for other, at in entry.links.items() if at < since]
            for row in keys:
                del entry.keys[row]
            for other in links:
                del entry.links[other]
            if keys or links:
                entry.changed()
                deleted = True
            for at in (*entry.keys.values(), *entry.links.values()):
                if at < oldest:
                    oldest = at
        self._oldest = oldest
        if deleted:
            self._memo.clear()
        return count

    # --- the rest goes to the store, after a flush ----------------------------------------

    def forget(self, user_id: str | None = None, anonymous_id: str | None = None) -> int:
        """See :meth:`~cdp_tiktok.identity.IdentityStore.forget`: flushes first, so the
        buffered writes of the person are deleted too, and drops the copy."""
        with self._lock:
            self._flush()
            self._drop()
            return self._store.forget(user_id, anonymous_id)

    def purge(self, now: float | None = None) -> int:
        """Flush, then delete expired entries and links (see the store's ``purge``)."""
        with self._lock:
            self._flush()
            return self._purge(time.time() if now is None else now)

    def checkpoint(self) -> None:
        """Flush, then fold the WAL into the main file (see the store's ``checkpoint``)."""
        with self._lock:
            self._flush()
            self._store.checkpoint()

    def close(self) -> None:
        """Flush, then close the store (closed even when the flush fails, which raises)."""
        with self._lock:
            self._finalizer.detach()
            try:
                self._flush()
            finally:
                self._drop()
                self._store.close()


def _write_pending(
    store: SQLiteIdentityStore,
    keys: dict[tuple[str, str, str], float],
    links: dict[tuple[str, str], float],
) -> None:
    if keys or links:
        store.write_rows(
            [(*row, at) for row, at in keys.items()],
            [(*pair, at) for pair, at in links.items()],
        )
        keys.clear()
        links.clear()


def _flush_left(
    pid: int,
    lock: threading.Lock,
    store: SQLiteIdentityStore,
    keys: dict[tuple[str, str, str], float],
    links: dict[tuple[str, str], float],
) -> None:
    """A store neither closed nor flushed (garbage collected, or at exit): write what is
    left, in the process that opened it only (a forked child must not use the parent's
    connection). A thread stuck holding the lock at exit is not waited for forever."""
    if os.getpid() == pid and lock.acquire(timeout=_EXIT_LOCK_SECONDS):
        try:
            _write_pending(store, keys, links)
        finally:
            lock.release()
