"""Throw-away PostgreSQL databases for tests (the server on 127.0.0.1:5432, user postgres).

Each test database has a unique name (pid and a counter) and is dropped afterwards;
a test that needs one calls :func:`require_postgres` first, which skips with a reason
when the server is unreachable (and fails in CI, see ``tests.conftest``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from tests.conftest import require_service

ADMIN_URL = os.environ.get("CDP_TIKTOK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_serial = itertools.count()


@cache
def _reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL unreachable at {ADMIN_URL}: {type(exc).__name__}"


def require_postgres() -> None:
    """Skip (or fail in CI) when the test server is unreachable."""
    reason = _reachable()
    require_service(reason is None, reason or "")


def url_of(name: str) -> str:
    """The url of database ``name`` on the test server."""
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create a uniquely named database; yield its url; drop it (and its sessions)."""
    import psycopg

    require_postgres()
    name = f"cdp_test_{os.getpid()}_{next(_serial)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_of(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
