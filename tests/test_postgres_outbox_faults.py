"""A PostgreSQL outbox whose connection is lost before, during and right after each
operation: nothing is lost or wrongly settled (an enqueue may be stored twice).

The backend talks to the server through a loopback proxy that reads the server's
messages and can cut both sides at the k-th ``ReadyForQuery`` of an operation: after
BEGIN, after any statement of a transaction (the server rolls it back), or after the
last one (committed, but the client never sees the answer, so the operation is run
again). "Before" terminates the idle session with ``pg_terminate_backend`` (only
sessions of this test's own database). Each outcome is compared with the same operation
run without a fault on the same rows.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from cdp_tiktok.delivery.postgres_outbox import PostgresOutbox
from cdp_tiktok.events import Attempt, BatchKey, OutgoingEvent
from tests.pg import fresh_database

KEY = BatchKey("TikTok", "web", "CFAULTPIXEL")
NOW = 1_000.0
READY_FOR_QUERY = ord("Z")


class CuttingProxy:
    """Forwards loopback TCP to the server; counts ``ReadyForQuery`` messages once armed
    and, at the chosen one, closes both sides instead of forwarding it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._cut_at: int | None = None
        self.seen = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, cut_at: int | None) -> None:
        """Count from zero; cut at the ``cut_at``-th ReadyForQuery (``None``: only count)."""
        with self._lock:
            self.seen, self._cut_at = 0, cut_at

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            for sock in (client, server):  # small messages, no Nagle delays
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        _close(source, target)

    def _replies(self, server: socket.socket, client: socket.socket) -> None:
        buffer = b""
        try:
            while chunk := server.recv(65536):
                buffer += chunk
                start = 0  # forward whole messages; keep a partial one for the next chunk
                while len(buffer) - start >= 5:
                    end = start + 1 + int.from_bytes(buffer[start + 1 : start + 5], "big")
                    if len(buffer) < end:
                        break
                    if buffer[start] == READY_FOR_QUERY and self._count():
                        client.sendall(buffer[:start])
                        _close(server, client)
                        return
                    start = end
                client.sendall(buffer[:start])
                buffer = buffer[start:]
        except OSError:
            pass
        _close(server, client)

    def _count(self) -> bool:
        with self._lock:
            self.seen += 1
            if self._cut_at is not None and self.seen == self._cut_at:
                self._cut_at = None
                return True
            return False

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            _close(*self._open)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def _attempt(outcome: str) -> Attempt:
    return Attempt(NOW, outcome, 50001, 200, outcome, f"req-{outcome}")


def _events(*names: str) -> list[OutgoingEvent]:
    return [OutgoingEvent(KEY, {"event": "Purchase", "event_id": name}) for name in names]


Operation = Callable[[PostgresOutbox], Any]
OPERATIONS: dict[str, Operation] = {
    "enqueue": lambda box: box.enqueue(_events("n1", "n2"), now=NOW),
    "enqueue_dedup": lambda box: box.enqueue(_events("e4", "n1"), now=NOW, dedup_seconds=60),
    "claim": lambda box: [r.id for r in box.claim("w2", 5, 10, now=NOW)],
    "claim_expired_lease": lambda box: [r.id for r in box.claim("w2", 5, 10, now=NOW + 20)],
    "mark_delivered": lambda box: box.mark_delivered([1, 2], _attempt("ok"), worker="w1"),
    "mark_delivered_any": lambda box: box.mark_delivered([1, 4], _attempt("ok")),
    "mark_retry": lambda box: box.mark_retry([1, 2], _attempt("retry"), NOW + 5, worker="w1"),
    "mark_retry_any": lambda box: box.mark_retry([1, 4], _attempt("retry"), NOW + 5),
    "mark_dead": lambda box: box.mark_dead([1], _attempt("dead"), "bad", worker="w1"),
    "mark_dead_any": lambda box: box.mark_dead([4], _attempt("dead"), "bad"),
    "release": lambda box: box.release([1, 2], worker="w1"),
    "release_any": lambda box: box.release([1]),
    "replay": lambda box: box.replay(now=NOW),
    "replay_ids": lambda box: box.replay([3], now=NOW),
    "purge": lambda box: box.purge(),
    "purge_ids": lambda box: box.purge([3]),
    "release_destination": lambda box: box.release_destination("TikTok", now=NOW),
    "purge_destination": lambda box: box.purge_destination("TikTok", now=NOW),
    "stop_destination": lambda box: box.stop_destination("TikTok", "paused", now=NOW),
    "stats": lambda box: box.stats(now=NOW),
    "status": lambda box: box.status(now=NOW),
    "next_ready_at": lambda box: box.next_ready_at(),
    "ready_keys": lambda box: box.ready_keys(now=NOW),
    "dead_letters": lambda box: list(box.dead_letters()),
}
READS = {"stats", "status", "next_ready_at", "ready_keys", "dead_letters"}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_database() as url:
        PostgresOutbox(url).close()  # the schema
        yield url


@pytest.fixture(scope="module")
def setup(database: str) -> Iterator[tuple[PostgresOutbox, psycopg.Connection[Any]]]:
    """A direct outbox and connection that set rows up and read them (never cut)."""
    box = PostgresOutbox(database + "?application_name=cdp_test_setup")
    conn = psycopg.connect(database, autocommit=True)
    yield box, conn
    conn.close()
    box.close()


def _reset(box: PostgresOutbox, conn: psycopg.Connection[Any]) -> None:
    """Rows 1, 2 leased to w1 until NOW + 10; 3 dead; 4 pending; 5 delivered."""
    conn.execute(
        "TRUNCATE cdp_outbox, cdp_outbox_delivered_keys, cdp_outbox_stops RESTART IDENTITY;"
        " UPDATE cdp_outbox_counters SET value = 0"
    )
    assert box.enqueue(_events("e1", "e2", "e3", "e4"), now=NOW) == [1, 2, 3, 4]
    assert box.enqueue(_events("e0"), now=NOW - 100) == [5]
    assert box.mark_delivered([5], _attempt("ok")) == 1
    assert [r.id for r in box.claim("w1", 2, 10, now=NOW)] == [1, 2]
    assert box.mark_dead([3], _attempt("dead"), "bad") == 1


def _snapshot(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT id, state, data, lease_owner, attempts, history::text, next_attempt_at,"
        " ready_at, reason, dead_at FROM cdp_outbox ORDER BY id"
    ).fetchall()
    return {
        "rows": {row[0]: row[1:] for row in rows},
        "keys": conn.execute("SELECT * FROM cdp_outbox_delivered_keys ORDER BY 1").fetchall(),
        "stops": conn.execute("SELECT * FROM cdp_outbox_stops").fetchall(),
        "counters": conn.execute("SELECT * FROM cdp_outbox_counters").fetchall(),
    }


def _terminate_idle_session(conn: psycopg.Connection[Any]) -> None:
    killed = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'cdp_tiktok' AND datname = current_database()"
    ).fetchall()
    assert killed == [(True,)]  # the session under test, idle between two calls


@pytest.fixture(scope="module")
def proxied(database: str) -> Iterator[tuple[CuttingProxy, PostgresOutbox]]:
    params = psycopg.conninfo.conninfo_to_dict(database)
    proxy = CuttingProxy((params["host"], int(params.get("port", 5432))))
    url = (
        f"postgresql://{params['user']}@127.0.0.1:{proxy.port}/{params['dbname']}"
        "?sslmode=disable&gssencmode=disable"
    )
    box = PostgresOutbox(url, sleep=lambda seconds: None)
    yield proxy, box
    box.close()
    proxy.close()


def _same_but_duplicates(got: dict[str, Any], expected: dict[str, Any], before: int) -> None:
    """An enqueue retried after its first attempt committed may store its events twice
    (under new ids); rows up to id ``before`` and the other tables are as expected."""

    def split(snapshot: dict[str, Any]) -> tuple[dict[int, Any], set[Any], dict[str, Any]]:
        rows = snapshot["rows"]
        old = {i: row for i, row in rows.items() if i <= before}
        new = {row for i, row in rows.items() if i > before}
        return old, new, {k: v for k, v in snapshot.items() if k != "rows"}

    assert split(got) == split(expected)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_a_lost_connection_loses_and_wrongly_settles_nothing(
    name: str,
    setup: tuple[PostgresOutbox, psycopg.Connection[Any]],
    proxied: tuple[CuttingProxy, PostgresOutbox],
) -> None:
    proxy, box = proxied
    setup_box, conn = setup
    operation = OPERATIONS[name]
    _reset(setup_box, conn)
    proxy.arm(None)
    expected_result = operation(box)
    round_trips = proxy.seen
    expected = _snapshot(conn)
    assert round_trips >= 1

    # 0: the idle session was terminated before the call; k: cut at the k-th answer
    for cut in range(round_trips + 1):
        _reset(setup_box, conn)
        if cut == 0:
            _terminate_idle_session(conn)
            proxy.arm(None)
        else:
            proxy.arm(cut)
        result = operation(box)
        got = _snapshot(conn)
        where = f"{name}, cut {cut} of {round_trips}"
        if name.startswith("enqueue"):
            _same_but_duplicates(got, expected, before=5)
            assert set(result) <= set(got["rows"]), where
            if cut < round_trips or not name.endswith("dedup"):
                assert len(result) == len(expected_result), where
            # else: the retry found the first attempt's rows and deduplicated them
            continue
        assert got == expected, where
        if cut < round_trips or name in READS:
            assert result == expected_result, where
        elif name.startswith("claim"):
            # the first claim's answer was lost: its rows stay leased until the lease
            # expires (claimed again later), the retry returns what is still ready
            assert set(result) <= set(expected_result), where


@pytest.mark.parametrize(
    ("error", "reconnect"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        (psycopg.errors.AdminShutdown(), True),  # pg_terminate_backend, a restart
        (psycopg.errors.CannotConnectNow(), True),  # the server is starting up
        (psycopg.errors.ConnectionFailure(), True),
        (psycopg.errors.TooManyConnections(), True),  # transient: retried as before
        (psycopg.errors.LockNotAvailable(), False),  # lock_timeout: an answer, not a loss
        (psycopg.errors.QueryCanceled(), False),  # statement_timeout
        (psycopg.errors.UndefinedTable(), False),
    ],
)
def test_only_a_lost_connection_is_retried_by_reconnecting(
    error: Exception, reconnect: bool
) -> None:
    from cdp_tiktok.postgres import is_connection_error

    assert is_connection_error(error) is reconnect
