"""Tests of the identity store (memory and real SQLite files) and enrich_user."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from cdp_tiktok.backends import open_identity_store
from cdp_tiktok.cli import main
from cdp_tiktok.hookspecs import hookimpl
from cdp_tiktok.identity import (
    MAX_VALUES_PER_KEY,
    WAL_CHECKPOINT_PAGES,
    WAL_KEEP_BYTES,
    IdentityStore,
    MemoryIdentityStore,
    SQLiteIdentityStore,
    enrich_user,
)
from cdp_tiktok.identity_cache import CachedIdentityStore
from cdp_tiktok.matchkeys import normalize_user, sha256_hex
from tests.pg import fresh_database

DAY = 86400.0
T0 = 1_700_000_000.0
E1, E2, P1, X1 = (sha256_hex(s) for s in ("e1@x.io", "e2@x.io", "+12133734253", "crm-1"))


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """One database for this module's PostgreSQL runs, created and dropped here."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", "sqlite-uncached", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IdentityStore]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        opened = open_identity_store(url, ttl_seconds=30 * DAY)  # creates the schema
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE cdp_identity_keys, cdp_identity_links")
        yield opened
        opened.close()
        return
    if request.param == "sqlite-uncached":
        opened: IdentityStore = SQLiteIdentityStore(tmp_path / "id.db", ttl_seconds=30 * DAY)
        yield opened
        opened.close()
        return
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'id.db'}"
    opened = open_identity_store(url, ttl_seconds=30 * DAY)
    yield opened
    opened.close()


def test_remember_then_lookup_by_either_id(store: IdentityStore) -> None:
    store.remember("u1", "a1", {"email": [E1], "phone": [P1]}, now=T0)
    expected = {"email": [E1], "phone": [P1]}
    assert store.lookup("u1", None, now=T0) == expected
    assert store.lookup(None, "a1", now=T0) == expected
    assert store.lookup("u1", "a1", now=T0) == expected
    assert store.lookup("u2", "a2", now=T0) == {}
    assert store.lookup(None, None, now=T0) == {}


def test_identify_with_both_ids_links_them(store: IdentityStore) -> None:
    store.remember("u1", "a1", {}, now=T0)  # identify without keys still links
    store.remember("u1", None, {"external_id": [X1]}, now=T0 + 1)
    assert store.lookup(None, "a1", now=T0 + 2) == {"external_id": [X1]}


def test_alias_links_are_followed_both_ways_and_transitively(store: IdentityStore) -> None:
    store.remember(None, "anon-1", {"email": [E1]}, now=T0)
    store.remember("old-user", None, {"phone": [P1]}, now=T0)
    store.remember("new-user", None, {"external_id": [X1]}, now=T0)
    store.link("anon-1", "old-user", now=T0)
    store.link("old-user", "new-user", now=T0)
    everything = {"email": [E1], "phone": [P1], "external_id": [X1]}
    assert store.lookup("new-user", None, now=T0) == everything
    assert store.lookup(None, "anon-1", now=T0) == everything


def test_values_are_newest_first_deduplicated_and_capped(store: IdentityStore) -> None:
    hashes = [sha256_hex(f"{i}@x.io") for i in range(MAX_VALUES_PER_KEY + 3)]
    for i, value in enumerate(hashes):
        store.remember("u1", None, {"email": [value]}, now=T0 + i)
    store.remember(None, "a1", {"email": [hashes[-1]]}, now=T0)
    store.link("a1", "u1", now=T0)
    result = store.lookup("u1", "a1", now=T0 + 100)
    assert result == {"email": list(reversed(hashes))[:MAX_VALUES_PER_KEY]}


def test_entries_expire_after_the_ttl(store: IdentityStore) -> None:
    store.remember("u1", "a1", {"email": [E1]}, now=T0)
    assert store.lookup("u1", None, now=T0 + 29 * DAY) == {"email": [E1]}
    assert store.lookup("u1", None, now=T0 + 31 * DAY) == {}
    assert store.lookup(None, "a1", now=T0 + 31 * DAY) == {}
    store.remember("u1", None, {"email": [E1]}, now=T0 + 20 * DAY)  # written again: renewed
    assert store.lookup("u1", None, now=T0 + 31 * DAY) == {"email": [E1]}


def test_purge_deletes_exactly_what_expired_at_any_time(store: IdentityStore) -> None:
    # The in-process stores skip looking through entries when none can have expired:
    # each purge here sits just before or just after an entry's expiry.
    purge = store.purge  # type: ignore[attr-defined]
    store.remember("u1", "a1", {"email": [E1]}, now=T0)  # 2 key rows, a link each way
    store.remember("u2", None, {"phone": [P1]}, now=T0 + DAY)
    assert purge(now=T0 + 30 * DAY - 1) == 0
    assert purge(now=T0 + 30 * DAY + 1) == 4
    assert purge(now=T0 + 31 * DAY - 1) == 0
    assert store.lookup("u2", None, now=T0 + DAY) == {"phone": [P1]}
    assert purge(now=T0 + 31 * DAY + 1) == 1
    assert store.lookup("u2", None, now=T0 + DAY) == {}
    assert purge(now=T0 + 40 * DAY) == 0


def test_forget_deletes_the_person_and_linked_ids_only(store: IdentityStore) -> None:
    store.remember("u1", "a1", {"email": [E1], "phone": [P1]}, now=T0)
    store.link("a0", "u1", now=T0)
    store.remember(None, "a0", {"external_id": [X1]}, now=T0)
    store.remember("u2", "a2", {"email": [E2]}, now=T0)
    assert store.forget(anonymous_id="a1") > 0
    for user_id, anonymous_id in (("u1", None), (None, "a1"), (None, "a0")):
        assert store.lookup(user_id, anonymous_id, now=T0) == {}
    assert store.lookup("u2", None, now=T0) == {"email": [E2]}
    assert store.forget(user_id="u1") == 0


@pytest.mark.parametrize(
    "keys",
    [
        {"email": ["alice@example.com"]},
        {"phone": ["+12133734253"]},
        {"email": "not-a-list"},
        {"ttclid": [E1]},
        {"email": [E1[:-1]]},
    ],
)
def test_remember_refuses_anything_but_hashed_keys(
    store: IdentityStore, keys: dict[str, Any]
) -> None:
    with pytest.raises(ValueError) as caught:
        store.remember("u1", None, keys, now=T0)
    assert "alice" not in str(caught.value) and "2133734253" not in str(caught.value)
    assert store.lookup("u1", None, now=T0) == {}


def test_uppercase_hashes_are_stored_lower_case(store: IdentityStore) -> None:
    store.remember("u1", None, {"email": [E1.upper()]}, now=T0)
    assert store.lookup("u1", None, now=T0) == {"email": [E1]}


# --- enrich_user --------------------------------------------------------------------------


def test_enrich_fills_missing_keys_and_event_keys_win() -> None:
    event_user = {"email": [E2], "phone": [], "ip": "203.0.113.9"}
    stored = {"email": [E1], "phone": [P1], "external_id": [X1]}
    enriched, filled = enrich_user(event_user, stored)
    assert enriched == {"email": [E2], "phone": [P1], "external_id": [X1], "ip": "203.0.113.9"}
    assert filled == ["phone", "external_id"]
    assert event_user == {"email": [E2], "phone": [], "ip": "203.0.113.9"}  # not modified
    enriched["external_id"].append("x")
    assert stored["external_id"] == [X1]  # lists are copies


def test_enrich_with_nothing_stored_changes_nothing() -> None:
    assert enrich_user({"email": [E1]}, {}) == ({"email": [E1]}, [])


# --- SQLite specifics ---------------------------------------------------------------------


def sqlite_bytes(path: Path) -> bytes:
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def test_sqlite_file_never_holds_raw_values(tmp_path: Path) -> None:
    path = tmp_path / "identity.db"
    raw = {
        "email": "Alice.Private@Example.com",
        "phone": "+1 213 373 4253",
        "external_id": "crm-77",
    }
    user_id, anonymous_id = "user-secret-42", "anon-secret-99"
    keys = normalize_user(raw).user
    store = open_identity_store(f"sqlite:///{path}", ttl_seconds=DAY)
    store.remember(user_id, anonymous_id, keys)
    store.link("previous-secret-7", user_id)
    assert store.lookup(user_id, None) == keys
    assert isinstance(store, CachedIdentityStore)
    store.flush()  # the cache writes behind
    content = sqlite_bytes(path)  # while open: the rows are in the -wal file
    assert keys["email"][0].encode() in content  # the check reads the right bytes
    needles = [*raw.values(), "alice.private@example.com", "+12133734253", "2133734253"]
    for needle in [*needles, user_id, anonymous_id, "previous-secret-7"]:
        assert needle.encode() not in content, needle
        assert needle.encode("utf-16-le") not in content, needle
    store.close()


def test_forget_leaves_no_trace_in_the_sqlite_files(tmp_path: Path) -> None:
    path = tmp_path / "identity.db"
    store = SQLiteIdentityStore(path, ttl_seconds=DAY)
    store.remember("u1", "a1", {"email": [E1], "phone": [P1]})
    store.remember("u2", None, {"email": [E2]})
    store.checkpoint()
    assert E1.encode() in sqlite_bytes(path)
    assert store.forget(user_id="u1") == 6  # 2 ids x 2 keys + 2 link rows
    assert E1.encode() not in sqlite_bytes(path)
    assert P1.encode() not in sqlite_bytes(path)
    assert E2.encode() in sqlite_bytes(path)
    store.close()


def test_sqlite_store_survives_reopening_and_purges_expired_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'id.db'}"
    store = open_identity_store(url, ttl_seconds=DAY)
    store.remember("u1", None, {"email": [E1]}, now=T0)
    store.remember("u2", None, {"email": [E2]})
    store.close()
    reopened = open_identity_store(url, ttl_seconds=DAY)  # opening purges the expired u1 row
    assert isinstance(reopened, CachedIdentityStore)
    assert reopened.lookup("u1", None, now=T0) == {}
    assert reopened.lookup("u2", None) == {"email": [E2]}
    assert reopened.purge() == 0
    reopened.close()


def test_the_sqlite_file_checkpoints_its_log_less_often_and_cuts_it_back(tmp_path: Path) -> None:
    store = SQLiteIdentityStore(tmp_path / "id.db", ttl_seconds=DAY)
    try:
        pragma = store._db.execute  # the store's own connection: settings are per connection
        assert pragma("PRAGMA journal_mode").fetchone() == ("wal",)
        assert pragma("PRAGMA wal_autocheckpoint").fetchone() == (WAL_CHECKPOINT_PAGES,)
        assert pragma("PRAGMA journal_size_limit").fetchone() == (WAL_KEEP_BYTES,)
    finally:
        store.close()


def test_sqlite_store_is_safe_across_threads(tmp_path: Path) -> None:
    store = open_identity_store(f"sqlite:///{tmp_path / 'id.db'}", ttl_seconds=DAY)

    def work(n: int) -> None:
        for i in range(50):
            store.remember(f"u{n}-{i}", None, {"external_id": [sha256_hex(f"{n}-{i}")]})
            store.lookup(f"u{n}-{i}", None)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(
        store.lookup(f"u{n}-{i}", None) == {"external_id": [sha256_hex(f"{n}-{i}")]}
        for n in range(4)
        for i in range(50)
    )
    store.close()


def _write_from_process(url: str, n: int) -> None:
    store = open_identity_store(url, ttl_seconds=DAY)
    for i in range(100):
        store.remember(f"p{n}-{i}", f"a{n}-{i}", {"email": [sha256_hex(f"{n}-{i}")]})
    store.close()


def test_several_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_from_process, args=(url, n)) for n in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    store = open_identity_store(url, ttl_seconds=DAY)
    for n in range(3):
        for i in range(100):
            assert store.lookup(None, f"a{n}-{i}") == {"email": [sha256_hex(f"{n}-{i}")]}
    store.close()


@pytest.mark.parametrize("url", ["redis://localhost", "sqlite:///", "sqlite://x.db", "memory"])
def test_unsupported_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported identity store URL"):
        open_identity_store(url, ttl_seconds=DAY)


class RedisStores:
    @hookimpl
    def cdp_register_identity_stores(self, register: Any) -> None:
        register("redis", lambda url, ttl: MemoryIdentityStore(ttl))


def test_a_plugin_registers_an_identity_store_by_scheme() -> None:
    store = open_identity_store("redis://localhost", ttl_seconds=DAY, plugins=[RedisStores()])
    assert isinstance(store, MemoryIdentityStore)
    store.close()


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl"):
        open_identity_store("memory://", ttl_seconds=0)


# --- CLI ----------------------------------------------------------------------------------


def test_cli_forget_deletes_a_person(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'id.db'}"
    store = open_identity_store(url, ttl_seconds=DAY)
    store.remember("user-to-forget", "anon-to-forget", {"email": [E1]})
    store.remember("someone-else", None, {"email": [E2]})
    store.close()
    result = CliRunner().invoke(
        main, ["identity", "forget", "--user-id", "user-to-forget", "--store", url]
    )
    assert result.exit_code == 0, result.output
    assert "Forgot 4 identity entries" in result.output
    assert "to-forget" not in result.output
    store = open_identity_store(url, ttl_seconds=DAY)
    assert store.lookup(None, "anon-to-forget") == {}
    assert store.lookup("someone-else", None) == {"email": [E2]}
    store.close()


def test_cli_forget_uses_the_identity_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("CDP_TIKTOK_IDENTITY", url)
    store = open_identity_store(url, ttl_seconds=DAY)
    store.remember(None, "a1", {"phone": [P1]})
    store.close()
    result = CliRunner().invoke(main, ["identity", "forget", "--anonymous-id", "a1"])
    assert result.exit_code == 0, result.output
    assert "Forgot 1 identity entry" in result.output


def test_cli_forget_needs_an_id_and_does_not_create_a_store(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["identity", "forget", "--store", "memory://"])
    assert result.exit_code == 2
    assert "--user-id" in result.output
    missing = tmp_path / "missing.db"
    result = runner.invoke(
        main, ["identity", "forget", "--user-id", "u", "--store", f"sqlite:///{missing}"]
    )
    assert result.exit_code == 0
    assert "nothing to forget" in result.output
    assert not missing.exists()
    result = runner.invoke(main, ["identity", "forget", "--user-id", "u", "--store", "redis://x"])
    assert result.exit_code == 2
    assert "unsupported identity store URL" in result.output
