"""The lookup memo serves repeated lookups and gives them up exactly when they could change.

That its answers equal the store's is the property tests' job
(``tests/test_identity_cache.py`` probes every id after every call, at times going
forward and back); these tests pin that it does serve, and when it must not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdp_tiktok.identity import IdentityStore, MemoryIdentityStore, SQLiteIdentityStore
from cdp_tiktok.identity_cache import CachedIdentityStore
from cdp_tiktok.identity_memo import LookupMemo
from cdp_tiktok.matchkeys import sha256_hex

T0 = 1_700_000_000.0
TTL = 3600.0
EMAIL, PHONE, OTHER = (sha256_hex(text) for text in ("email", "phone", "other"))


@pytest.fixture(params=["memory", "cached"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IdentityStore]:
    opened: IdentityStore = (
        MemoryIdentityStore(TTL)
        if request.param == "memory"
        else CachedIdentityStore(SQLiteIdentityStore(tmp_path / "identity.db", TTL))
    )
    yield opened
    opened.close()


def test_a_repeated_lookup_is_served_from_the_memo(store: IdentityStore) -> None:
    store.remember("u1", "a1", {"email": [EMAIL]}, now=T0)
    first = store.lookup("u1", None, now=T0 + 1)
    assert first == {"email": [EMAIL]}
    assert store.lookup("u1", None, now=T0 + 2) is first  # the very answer: not recomputed


def test_a_write_to_a_linked_id_replaces_the_answer(store: IdentityStore) -> None:
    store.remember("u1", "a1", {"email": [EMAIL]}, now=T0)
    first = store.lookup("u1", None, now=T0 + 1)
    store.remember("a1", None, {"phone": [PHONE]}, now=T0 + 2)  # a1 is linked to u1
    assert store.lookup("u1", None, now=T0 + 3) == {"email": [EMAIL], "phone": [PHONE]}
    store.link("u1", "u2", now=T0 + 4)
    store.remember("u2", None, {"email": [OTHER]}, now=T0 + 5)
    # ids in walk order (u1 first), each newest first
    assert store.lookup("u1", None, now=T0 + 6) == {"email": [EMAIL, OTHER], "phone": [PHONE]}
    assert first == {"email": [EMAIL]}  # a served answer is never changed afterwards


def test_an_answer_ends_when_its_oldest_row_expires_and_time_going_back_recomputes(
    store: IdentityStore,
) -> None:
    store.remember("u1", None, {"email": [EMAIL]}, now=T0)
    store.remember("u1", None, {"phone": [PHONE]}, now=T0 + 100)
    both = {"email": [EMAIL], "phone": [PHONE]}
    assert store.lookup("u1", None, now=T0 + 50) == both
    assert store.lookup("u1", None, now=T0 + TTL) == both  # the e-mail's last moment
    assert store.lookup("u1", None, now=T0 + TTL + 1) == {"phone": [PHONE]}
    assert store.lookup("u1", None, now=T0 + TTL + 101) == {}
    assert store.lookup("u1", None, now=T0 + 50) == both  # an earlier time counts them again


def test_forget_and_purge_clear_the_memo(store: IdentityStore) -> None:
    store.remember("u1", "a1", {"email": [EMAIL]}, now=T0)
    assert store.lookup("a1", None, now=T0) == {"email": [EMAIL]}
    assert store.forget("u1") == 4  # two key rows, a link each way
    assert store.lookup("a1", None, now=T0) == {}
    store.remember("u1", None, {"email": [EMAIL]}, now=T0)
    assert store.lookup("u1", None, now=T0 - 10) == {"email": [EMAIL]}
    assert store.purge(now=T0 + TTL + 1) == 1  # type: ignore[attr-defined]
    assert store.lookup("u1", None, now=T0 - 10) == {}  # purged rows are gone for any time


def test_the_memo_is_bounded_and_forgets_only_what_a_write_touched() -> None:
    memo = LookupMemo(max_entries=3)
    memo.keep(("u1", None), {"email": [EMAIL]}, ["d1"], 10.0, 20.0)
    memo.keep(("u2", None), {}, ["d2", "d3"], 10.0, float("inf"))
    assert memo.answer(("u1", None), 15.0) == {"email": [EMAIL]}
    assert memo.answer(("u1", None), 9.0) is None  # before it was computed
    assert memo.answer(("u1", None), 21.0) is None  # after its row expired
    memo.touch(["d3"])
    assert memo.answer(("u2", None), 15.0) is None
    assert memo.answer(("u1", None), 15.0) == {"email": [EMAIL]}
    memo.keep(("u3", None), {}, ["d4"], 10.0, 20.0)  # three digests held: full
    memo.keep(("u4", None), {}, ["d5"], 10.0, 20.0)
    assert memo.answer(("u1", None), 15.0) is None  # cleared, then u4 kept
    assert memo.answer(("u4", None), 15.0) == {}
