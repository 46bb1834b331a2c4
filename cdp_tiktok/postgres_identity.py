"""The PostgreSQL identity store: one identity graph shared by every intake process.

Same guarantees as the SQLite store (:mod:`cdp_tiktok.identity`): only SHA-256 ids and
64-hex match keys are stored, entries expire ``ttl_seconds`` after they were last
written, and ``forget`` deletes the ids given and every id linked to them, in one
transaction. An identify received by one process enriches a track received by another.
The schema is created by the tool (component ``identity`` in ``cdp_schema_versions``);
a lost connection is reopened with backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cdp_tiktok.hookspecs import hookimpl
from cdp_tiktok.identity import (
    MAX_LINKED_IDS,
    PURGE_EVERY,
    IdentityStore,
    checked_keys,
    id_digests,
    merge_rows,
)
from cdp_tiktok.postgres import MIGRATION_LOCK, Session, safe_url

SCHEMA_VERSION = 1

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS cdp_schema_versions (
        component TEXT PRIMARY KEY, version INTEGER NOT NULL)""",
    """CREATE TABLE cdp_identity_keys (
        node TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        written DOUBLE PRECISION NOT NULL, PRIMARY KEY (node, key, value))""",
    "CREATE INDEX cdp_identity_keys_written ON cdp_identity_keys (written)",
    """CREATE TABLE cdp_identity_links (
        node TEXT NOT NULL, other TEXT NOT NULL, written DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (node, other))""",
    "CREATE INDEX cdp_identity_links_written ON cdp_identity_links (written)",
]
_UPSERT_KEYS = (
    "INSERT INTO cdp_identity_keys (node, key, value, written)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[])"
    " ON CONFLICT (node, key, value) DO UPDATE SET written = excluded.written"
)
_UPSERT_LINKS = (
    "INSERT INTO cdp_identity_links (node, other, written) VALUES (%s, %s, %s), (%s, %s, %s)"
    " ON CONFLICT (node, other) DO UPDATE SET written = excluded.written"
)


class PostgresIdentityStore:
    """An :class:`~cdp_tiktok.identity.IdentityStore` in a PostgreSQL database.

    One connection per object, serialized by a lock (thread-safe).
    """

    def __init__(
        self, url: str, ttl_seconds: float, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._shown = safe_url(url)
        self._ttl = ttl_seconds
        self._writes = 0
        self._session = Session(url, sleep=sleep)
        self._run = self._session.run
        self._run("migrate", self._migrate)

    def __repr__(self) -> str:
        return f"PostgresIdentityStore({self._shown!r})"

    def _migrate(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        cur.execute("SELECT to_regclass('cdp_identity_keys') IS NOT NULL")
        if not cur.fetchone()[0]:
            for statement in _SCHEMA:
                cur.execute(statement)
        cur.execute("SELECT version FROM cdp_schema_versions WHERE component = 'identity'")
        row = cur.fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self._shown}: identity schema version {row[0]}, this version of "
                f"cdp_tiktok understands up to {SCHEMA_VERSION}"
            )
        cur.execute(
            "INSERT INTO cdp_schema_versions VALUES ('identity', %s) ON CONFLICT (component)"
            " DO UPDATE SET version = excluded.version",
            (SCHEMA_VERSION,),
        )

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            self.purge()

    def remember(
        self,
        user_id: str | None,
        anonymous_id: str | None,
        keys: Mapping[str, Sequence[str]],
        now: float | None = None,
    ) -> None:
        """See :meth:`~cdp_tiktok.identity.IdentityStore.remember`."""
        rows = checked_keys(keys)
        at = time.time() if now is None else now
        nodes = id_digests(user_id, anonymous_id)
        entries = [(n, k, v) for n in nodes for k, v in rows]
        if not entries and len(nodes) < 2:
            return

        def write(cur: Any) -> None:
            if entries:
                cur.execute(
                    _UPSERT_KEYS,
                    (
                        [e[0] for e in entries],
                        [e[1] for e in entries],
                        [e[2] for e in entries],
                        [at] * len(entries),
                    ),
                )
            if len(nodes) == 2:
                cur.execute(_UPSERT_LINKS, (nodes[0], nodes[1], at, nodes[1], nodes[0], at))

        self._run("remember", write)
        self._wrote()

    def link(self, previous_id: str, user_id: str, now: float | None = None) -> None:
        """See :meth:`~cdp_tiktok.identity.IdentityStore.link`."""
        nodes = id_digests(previous_id, user_id)
        if len(nodes) < 2:
            return
        at = time.time() if now is None else now
        self._run(
            "link",
            lambda cur: cur.execute(
                _UPSERT_LINKS, (nodes[0], nodes[1], at, nodes[1], nodes[0], at)
            ),
        )
        self._wrote()

    @staticmethod
    def _component(cur: Any, start: list[str], since: float) -> list[str]:
        seen = list(start)
        for node in seen:
            cur.execute(
                "SELECT other FROM cdp_identity_links WHERE node = %s AND written >= %s",
                (node, since),
            )
            for (other,) in cur.fetchall():
                if other not in seen and len(seen) < MAX_LINKED_IDS:
                    seen.append(other)
        return seen

    def lookup(
        self, user_id: str | None, anonymous_id: str | None, now: float | None = None
    ) -> dict[str, list[str]]:
        """See :meth:`~cdp_tiktok.identity.IdentityStore.lookup`."""
        since = (time.time() if now is None else now) - self._ttl
        start = id_digests(user_id, anonymous_id)
        if not start:
            return {}

        def read(cur: Any) -> list[tuple[str, str]]:
            rows: list[tuple[str, str]] = []
            for node in self._component(cur, start, since):
                cur.execute(
                    "SELECT key, value FROM cdp_identity_keys WHERE node = %s AND written >= %s"
                    " ORDER BY written DESC, key, value",
                    (node, since),
                )
                rows.extend(cur.fetchall())
            return rows

        return merge_rows(self._run("lookup", read))

    def forget(self, user_id: str | None = None, anonymous_id: str | None = None) -> int:
        """See :meth:`~cdp_tiktok.identity.IdentityStore.forget`."""
        start = id_digests(user_id, anonymous_id)

        def delete(cur: Any) -> int:
            nodes = self._component(cur, start, float("-inf"))
            cur.execute("DELETE FROM cdp_identity_keys WHERE node = ANY(%s)", (nodes,))
            count: int = cur.rowcount
            cur.execute(
                "DELETE FROM cdp_identity_links WHERE node = ANY(%s) OR other = ANY(%s)",
                (nodes, nodes),
            )
            return count + int(cur.rowcount)

        return self._run("forget", delete)

    def purge(self, now: float | None = None) -> int:
        """Delete expired entries and links; return how many rows were deleted."""
        since = (time.time() if now is None else now) - self._ttl

        def delete(cur: Any) -> int:
            cur.execute("DELETE FROM cdp_identity_keys WHERE written < %s", (since,))
            count: int = cur.rowcount
            cur.execute("DELETE FROM cdp_identity_links WHERE written < %s", (since,))
            return count + int(cur.rowcount)

        return self._run("purge", delete)

    def close(self) -> None:
        """Close the database connection."""
        self._session.close()


def open_postgres_identity_store(url: str, ttl_seconds: float) -> IdentityStore:
    """The identity store of a ``postgresql://user@host:port/db`` url (no password)."""
    return PostgresIdentityStore(url, ttl_seconds)


@hookimpl
def cdp_register_identity_stores(register: Any) -> None:
    """The built-in ``postgresql://`` (and ``postgres://``) identity store."""
    register("postgresql", open_postgres_identity_store)
    register("postgres", open_postgres_identity_store)
