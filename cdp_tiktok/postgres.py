"""Connecting to PostgreSQL (psycopg 3) for the outbox and identity store backends.

A password never comes from a url (it would be printed, logged and kept in shell
history): a url carrying one is refused, and libpq reads it from ``PGPASSWORD``, a
``~/.pgpass`` file or a service file (``PGSERVICEFILE``) instead. Errors never echo the
url. A lost connection is reopened with exponential backoff (:func:`reconnecting`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
RECONNECT_SECONDS = 30.0
"""How long an operation keeps reconnecting before it gives up and raises."""
CONNECT_TIMEOUT = 5
MIGRATION_LOCK = 7_431_002_271
"""``pg_advisory_xact_lock`` key held while any backend creates or migrates its schema
(one key for all: they share ``cdp_schema_versions``)."""


def check_url(url: str) -> dict[str, Any]:
    """The libpq parameters of ``url``; ``ValueError`` when it is not a PostgreSQL url or
    carries a password (the message never repeats the url)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:
        raise ValueError("not a valid postgresql:// url (see libpq connection URIs)") from None
    if params.get("password"):
        raise ValueError(
            "a password in a postgresql:// url is refused (it would be shown and logged); "
            "set PGPASSWORD or use a ~/.pgpass or service file"
        )
    return params


def safe_url(url: str) -> str:
    """``url`` as it may be shown: host, port and database only."""
    try:
        params = check_url(url)
    except ValueError:
        return "postgresql://…"
    host = params.get("host", "")
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{params.get('user', '')}@{host}{port}/{params.get('dbname', '')}"


def connect(url: str, *, autocommit: bool = True) -> Any:
    """A new psycopg connection to ``url`` (checked by :func:`check_url`)."""
    import psycopg

    params = check_url(url)
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("application_name", "cdp_tiktok")
    return psycopg.connect(autocommit=autocommit, **params)


def is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` means the connection is gone (worth reconnecting), not bad SQL
    nor a server's answer to the statement (a lock or statement timeout, ...)."""
    import psycopg

    if isinstance(error, psycopg.InterfaceError):
        return True
    # admin and crash shutdown are operational errors too; sqlstate None: the link broke
    return isinstance(error, psycopg.OperationalError) and (
        error.sqlstate not in _STATEMENT_ANSWERS
    )


# Operational errors that answer the statement on a live connection: lock_not_available
# (lock_timeout, NOWAIT) and query_canceled (statement_timeout, a cancel request).
_STATEMENT_ANSWERS = frozenset(("55P03", "57014"))


def reconnecting(
    operation: Callable[[], T],
    reconnect: Callable[[], None],
    *,
    what: str,
    give_up_after: float = RECONNECT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation``; when the connection is lost, ``reconnect`` with exponential
    backoff (0.05 s doubling to 2 s) and run it again, for up to ``give_up_after`` s.

    An operation is one transaction, so a retried one either committed before (settles
    are idempotent; an enqueue may then be stored twice: delivery is at least once) or
    not at all.
    """
    deadline = time.monotonic() + give_up_after
    delay = 0.05
    while True:
        try:
            return operation()
        except Exception as error:
            if not is_connection_error(error) or time.monotonic() >= deadline:
                raise
            log.warning("PostgreSQL connection lost during %s; reconnecting", what)
        while True:
            sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                reconnect()
                break
            except Exception as error:
                if not is_connection_error(error) or time.monotonic() >= deadline:
                    raise


class Session:
    """One connection of a backend: calls serialized by a lock, each one transaction,
    reopened with backoff when the link is lost (:func:`reconnecting`)."""

    def __init__(self, url: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._url = url
        self._sleep = sleep
        self._lock = threading.Lock()
        self._conn: Any = connect(url)

    def _reconnect(self) -> None:
        try:
            self._conn.close()
        finally:
            self._conn = connect(self._url)

    def run(self, what: str, operation: Callable[[Any], T], *, single: bool = False) -> T:
        """``operation(cursor)`` in one transaction; ``what`` names it in the log.

        ``single``: the operation runs one statement, which is its own transaction on
        this autocommit connection, so no ``BEGIN``/``COMMIT`` round trips are spent.
        """

        def once() -> T:
            if single:
                with self._conn.cursor() as cur:
                    return operation(cur)
            with self._conn.transaction(), self._conn.cursor() as cur:
                return operation(cur)

        with self._lock:
            return reconnecting(once, self._reconnect, what=what, sleep=self._sleep)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
