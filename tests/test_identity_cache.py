"""The identity cache (write-behind, lookups from memory) answers as the SQLite store does.

Real SQLite files throughout: a cached and an uncached store each get their own file and
the same calls; their answers, and at the end the files' rows, must be equal. With two
connections per file, when the calls move to the other connection the one that wrote
flushes and the one that reads next syncs (what the callers guarantee: the intake flushes
before it answers and syncs before it maps a group).
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from cdp_tiktok.backends import open_identity_store
from cdp_tiktok.delivery.memory_outbox import MemoryOutbox
from cdp_tiktok.delivery.sqlite_outbox import SQLiteOutbox
from cdp_tiktok.host import Host
from cdp_tiktok.identity import (
    MAX_LINKED_IDS,
    PURGE_EVERY,
    IdentityStore,
    MemoryIdentityStore,
    SQLiteIdentityStore,
)
from cdp_tiktok.identity_cache import CachedIdentityStore
from cdp_tiktok.ingest.metrics import ServiceMetrics
from cdp_tiktok.ingest.pipeline import Pipeline
from cdp_tiktok.matchkeys import sha256_hex
from cdp_tiktok.settings import Secret, TikTokSettings
from tests.helpers_service import answer_of

DAY = 86400.0
T0 = 1_700_000_000.0
TTL = 2 * DAY
HASHES = [sha256_hex(f"value-{i}") for i in range(14)]
PEOPLE = ("u1", "u2", "u3", "a1", "a2")
IDS = st.sampled_from([*PEOPLE, "", None])
TIMES = st.integers(0, 5).map(lambda k: T0 + k * DAY)
KEYS = st.dictionaries(
    st.sampled_from(["email", "phone", "external_id"]),
    st.lists(st.sampled_from(HASHES), max_size=4),
    max_size=3,
)
CONN = st.integers(0, 1)
OPS = st.one_of(
    st.tuples(st.just("remember"), CONN, IDS, IDS, KEYS, TIMES),
    st.tuples(st.just("link"), CONN, IDS.map(str), IDS.map(str), TIMES),
    st.tuples(st.just("lookup"), CONN, IDS, IDS, TIMES),
    st.tuples(st.just("forget"), CONN, IDS, IDS),
    st.tuples(st.just("purge"), CONN, TIMES),
    st.tuples(st.just("flush"), CONN),
    st.tuples(st.just("raw"), CONN),
)


def rows(path: Path) -> tuple[list[Any], list[Any]]:
    """Every row of an identity file, sorted."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        keys = db.execute("SELECT * FROM identity_keys ORDER BY 1, 2, 3").fetchall()
        links = db.execute("SELECT * FROM identity_links ORDER BY 1, 2").fetchall()
    return keys, links


def apply(store: IdentityStore, op: tuple[Any, ...]) -> Any:
    """Run one operation; its answer (or the kind of error it raised)."""
    name, _conn, *args = op
    try:
        if name == "remember":
            return store.remember(args[0], args[1], args[2], now=args[3])
        if name == "link":
            return store.link(args[0], args[1], now=args[2])
        if name == "lookup":
            return store.lookup(args[0], args[1], now=args[2])
        if name == "forget":
            return store.forget(args[0], args[1])
        if name == "purge":
            return store.purge(now=args[0])  # type: ignore[attr-defined]
        if name == "raw":
            return store.remember("u1", None, {"email": ["alice@example.com"]}, now=T0)
        return None  # flush: the uncached store has nothing to do
    except ValueError as exc:
        return ("ValueError", str(exc))


TUNINGS = {
    "default": {},  # the file is read whole at open
    "lazy": {"preload_rows": 0},  # every id is read from the file when first met
    # flush every 8 writes, keep at most 2 ids: the copy is dropped often
    "small": {"flush_every": 8, "max_ids": 2},
    "sync-every-call": {"sync_seconds": 0.0},
}


# after every call: lookups at times that let entries expire (gaps over the TTL), then
# going back, where the same entries count again
PROBES = [T0 + k * DAY for k in (0, 3, 5, 2, 0)]


@settings(max_examples=150)
@given(ops=st.lists(OPS, max_size=40))
def test_the_memory_store_answers_as_the_sqlite_store(ops: list[tuple[Any, ...]]) -> None:
    who = [(person, None) for person in PEOPLE] + [("u1", "a1")]
    with tempfile.TemporaryDirectory() as directory:
        plain = SQLiteIdentityStore(Path(directory, "plain.db"), TTL)
        memory = MemoryIdentityStore(TTL)
        try:
            for op in ops:
                assert apply(memory, op) == apply(plain, op), op
                for at in PROBES:
                    for user_id, anonymous_id in who:
                        found = plain.lookup(user_id, anonymous_id, now=at)
                        assert memory.lookup(user_id, anonymous_id, now=at) == found, (op, at)
        finally:
            plain.close()
            memory.close()


@pytest.mark.parametrize("tuning", TUNINGS)
@settings(max_examples=120)
@given(ops=st.lists(OPS, max_size=40), two=st.booleans())
def test_the_cached_store_answers_exactly_as_the_uncached_store(
    tuning: str, ops: list[tuple[Any, ...]], two: bool
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        plain_path, cached_path = Path(directory, "plain.db"), Path(directory, "cached.db")
        count = 2 if two else 1
        stamp = time.time()  # not purged by the clock when the stores open
        for path in (plain_path, cached_path):  # the same rows in both files to start with
            seed = SQLiteIdentityStore(path, TTL)
            seed.remember("seed", "a1", {"email": [HASHES[13]]}, now=stamp)
            seed.close()
        plain = [SQLiteIdentityStore(plain_path, TTL) for _ in range(count)]
        cached = [
            CachedIdentityStore(SQLiteIdentityStore(cached_path, TTL), **TUNINGS[tuning])
            for _ in range(count)
        ]
        try:
            previous = 0
            for op in ops:
                conn = op[1] % count
                if conn != previous:
                    cached[previous].flush()  # its writes were acknowledged
                    cached[conn].flush()  # and this one syncs before it acts
                    previous = conn
                if op[0] == "flush":
                    cached[conn].flush()
                expected = apply(plain[conn], op)
                assert apply(cached[conn], op) == expected, op
                for at in PROBES:  # and what every id now finds, as entries expire
                    for person in PEOPLE:
                        found = plain[conn].lookup(person, None, now=at)
                        assert cached[conn].lookup(person, None, now=at) == found, (op, at)
        finally:
            for store in [*plain, *cached]:
                store.close()
        assert rows(cached_path) == rows(plain_path)


def test_a_component_over_the_link_cap_is_walked_as_the_store_walks_it(tmp_path: Path) -> None:
    plain = SQLiteIdentityStore(tmp_path / "plain.db", TTL)
    cached = CachedIdentityStore(SQLiteIdentityStore(tmp_path / "cached.db", TTL))
    count = MAX_LINKED_IDS + 15
    for store in (plain, cached):
        for i in range(count):
            at = T0 + (i % 7) * 3600
            store.remember(f"id-{i}", None, {"email": [sha256_hex(f"e{i}")]}, now=at)
            store.link(f"id-{i}", f"id-{(i * 7 + 3) % count}", now=at)
            store.link(f"id-{i}", f"id-{i + 1}", now=at)
    for i in range(0, count, 5):
        answer = plain.lookup(f"id-{i}", f"id-{count - i}", now=T0 + DAY)
        assert len(answer["email"]) == 10  # capped, from a component cut at 50 ids
        assert cached.lookup(f"id-{i}", f"id-{count - i}", now=T0 + DAY) == answer
    plain.close()
    cached.close()
    assert rows(tmp_path / "cached.db") == rows(tmp_path / "plain.db")


def test_the_periodic_purge_runs_after_the_same_writes_as_the_stores(tmp_path: Path) -> None:
    plain = SQLiteIdentityStore(tmp_path / "plain.db", TTL)
    cached = CachedIdentityStore(SQLiteIdentityStore(tmp_path / "cached.db", TTL))
    for store in (plain, cached):
        store.remember("u1", None, {"email": [HASHES[0]]}, now=T0)  # expired by the clock
        assert store.lookup("u1", None, now=T0) == {"email": [HASHES[0]]}
        for i in range(PURGE_EVERY - 2):
            store.link(f"x{i}", f"y{i}", now=T0)
        assert store.lookup("u1", None, now=T0) == {"email": [HASHES[0]]}
        store.link("x", "y", now=T0)  # the PURGE_EVERY-th write purges by the clock
        assert store.lookup("u1", None, now=T0) == {}
        store.close()
    assert rows(tmp_path / "cached.db") == rows(tmp_path / "plain.db") == ([], [])


def test_another_connections_commit_drops_the_copy_and_keeps_own_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'id.db'}"
    first, second = open_identity_store(url, TTL), open_identity_store(url, TTL)
    e1, e2, e3 = HASHES[:3]
    assert second.lookup("u1", None, now=T0) == {}  # now in second's copy, as nothing
    second.remember("u2", None, {"email": [e2]}, now=T0)  # buffered in second
    first.remember("u1", "a1", {"email": [e1]}, now=T0)
    first.flush()
    second.flush()  # the sync: writes u2, sees first's commit, drops the copy
    assert second.lookup(None, "a1", now=T0) == {"email": [e1]}
    assert second.lookup("u1", None, now=T0) == {"email": [e1]}
    assert second.lookup("u2", None, now=T0) == {"email": [e2]}  # not lost by the drop
    first.link("u1", "u2", now=T0 + 1)
    first.remember("u1", None, {"email": [e3]}, now=T0 + 1)
    first.flush()
    second.flush()
    assert second.lookup("u2", None, now=T0 + 1) == {"email": [e2, e3, e1]}
    second.close()
    first.close()
    plain = SQLiteIdentityStore(tmp_path / "id.db", 1e10)  # opening purges by the clock
    assert plain.lookup("u2", None, now=T0 + 1) == {"email": [e2, e3, e1]}
    plain.close()


def test_without_a_flush_a_store_syncs_at_its_first_call_after_sync_seconds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "id.db"
    writer = CachedIdentityStore(SQLiteIdentityStore(path, TTL), sync_seconds=0.0)
    reader = CachedIdentityStore(SQLiteIdentityStore(path, TTL), sync_seconds=0.0)
    assert reader.lookup("u1", None, now=T0) == {}
    writer.remember("u1", None, {"email": [HASHES[0]]}, now=T0)
    writer.lookup("u1", None, now=T0)  # its next call writes what the last one buffered
    assert reader.lookup("u1", None, now=T0) == {"email": [HASHES[0]]}
    writer.close()
    reader.close()


def test_writes_are_buffered_until_a_flush_and_close_flushes(tmp_path: Path) -> None:
    path = tmp_path / "id.db"
    cached = CachedIdentityStore(SQLiteIdentityStore(path, TTL), flush_every=3)
    plain = SQLiteIdentityStore(path, TTL)
    cached.remember("u1", None, {"email": [HASHES[0]]}, now=T0)
    cached.remember("u2", None, {"email": [HASHES[1]]}, now=T0)
    assert plain.lookup("u1", None, now=T0) == {}  # written behind
    cached.link("u1", "u2", now=T0)  # the third write: a batch
    assert plain.lookup("u1", None, now=T0) == {"email": [HASHES[0], HASHES[1]]}
    cached.remember("u3", None, {"phone": [HASHES[2]]}, now=T0)
    cached.close()
    assert plain.lookup("u3", None, now=T0) == {"phone": [HASHES[2]]}
    plain.close()


def test_forget_deletes_buffered_writes_too(tmp_path: Path) -> None:
    cached = open_identity_store(f"sqlite:///{tmp_path / 'id.db'}", TTL)
    cached.remember("u1", "a1", {"email": [HASHES[0]], "phone": [HASHES[1]]}, now=T0)
    assert cached.forget(user_id="u1") == 6  # 2 ids x 2 keys + 2 link rows
    assert cached.lookup(None, "a1", now=T0) == {}
    cached.close()
    assert rows(tmp_path / "id.db") == ([], [])


def test_a_store_left_open_is_flushed_when_the_process_exits(tmp_path: Path) -> None:
    path = tmp_path / "id.db"
    script = (
        "import sys\n"
        "from cdp_tiktok.backends import open_identity_store\n"
        "store = open_identity_store('sqlite:///' + sys.argv[1], 86400.0)\n"
        f"store.remember('u1', None, {{'email': ['{HASHES[0]}']}})\n"
        "globals()['kept'] = store  # alive until the interpreter exits, never closed\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    plain = SQLiteIdentityStore(path, DAY)
    assert plain.lookup("u1", None) == {"email": [HASHES[0]]}
    plain.close()


# --- the callers flush before they commit events -------------------------------------------

SENDABLE = TikTokSettings(event_source_id="C1", access_token=Secret("t"))
IDENTIFY = {"type": "identify", "userId": "user-1", "traits": {"email": "ann@example.com"}}
TRACK = {
    "type": "track",
    "userId": "user-1",
    "event": "Order Completed",
    "messageId": "m-1",
    "properties": {"order_id": "o-1", "revenue": 1, "currency": "USD"},
}
ANN = sha256_hex("ann@example.com")
USER_1 = sha256_hex("user-1")


@pytest.fixture
def identity_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'id.db'}"


def seen_elsewhere(url: str) -> dict[str, list[str]]:
    """What another connection finds for user-1."""
    plain = SQLiteIdentityStore(url[len("sqlite:///") :], DAY)
    try:
        return plain.lookup("user-1", None)
    finally:
        plain.close()


def test_host_with_an_outbox_makes_identity_writes_durable(identity_url: str) -> None:
    with Host(
        SENDABLE, identity=identity_url, outbox=MemoryOutbox(), load_entry_points=False
    ) as host:
        assert isinstance(host.identity, CachedIdentityStore)
        host.process(IDENTIFY)
        assert seen_elsewhere(identity_url) == {"email": [ANN], "external_id": [USER_1]}
        assert [e.data["user"]["email"] for e in host.process(TRACK)] == [[ANN]]


def test_send_flushes_identity_writes_before_it_enqueues(identity_url: str, tmp_path: Path) -> None:
    from cdp_tiktok.cli.send import IntakeSummary, _Enqueuer, _map_into_outbox

    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    lines = b"".join(json.dumps(m).encode() + b"\n" for m in (IDENTIFY, TRACK))
    with Host(SENDABLE, identity=identity_url, load_entry_points=False) as host:
        summary = IntakeSummary()
        _map_into_outbox(
            io.BytesIO(lines), "<test>", host, _Enqueuer(outbox, summary, 0.0), summary, SENDABLE,
            Console(file=io.StringIO()), frozenset({"TikTok"}),
        )  # fmt: skip
        assert outbox.stats().pending == 1
        assert seen_elsewhere(identity_url)["email"] == [ANN]  # before the host closes
    outbox.close()


def test_the_intake_answers_an_identify_once_its_keys_are_durable(
    identity_url: str, tmp_path: Path
) -> None:
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    with Host(SENDABLE, identity=identity_url, load_entry_points=False) as host:
        pipeline = Pipeline(
            lambda message: host.process(message, validated=True),
            outbox, {"TikTok"}, ServiceMetrics(),
            max_message_bytes=32_000, max_waiting=10, max_queue_records=1000,
            flush_identity=host.flush,
        )  # fmt: skip
        pipeline.start()
        try:
            result = answer_of(pipeline, [IDENTIFY], "identify")
            assert result.refusal is None and result.accepted == 1
            assert seen_elsewhere(identity_url)["email"] == [ANN]  # before the host closes
        finally:
            pipeline.stop()
    outbox.close()
