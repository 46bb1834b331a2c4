"""Benchmark: the identity store with and without its cache (write-behind batching).

On the deterministic shop traffic of ``bench_map.py`` (``--users`` people, most of them
coming back), two scenarios, each on a fresh SQLite file per round:

* ``calls``: only the identity calls the TikTok destination makes for the stream: an
  identify remembers the hashed e-mail and phone of its userId/anonymousId, every other
  message looks its ids up. ``uncached`` is :class:`~cdp_tiktok.identity.SQLiteIdentityStore`
  (one transaction per write, SQL per lookup); ``cached`` is what a ``sqlite:///`` url
  opens, :class:`~cdp_tiktok.identity_cache.CachedIdentityStore`, flushed every 1,000
  messages as ``cdp-tiktok send`` does before each outbox commit, and closed (flushed)
  inside the timing;
* ``host``: ``Host.process`` of every validated message (routing, mapping, enrichment)
  with either store: what the cache saves of the whole per-message cost.

Rounds are interleaved (uncached, cached, uncached, ...); printed per scenario: the
median seconds of each and the median of the per-round ratios uncached/cached, with the
1-minute load average of each round (``machine_load.py``: a round is UNRELIABLE when the
load exceeds the CPU count).

Run: ``python benchmarks/bench_identity.py [--messages N] [--users U] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_map import Shop, settings
from machine_load import load_1min, round_note, summary_note

from cdp_tiktok.host import Host
from cdp_tiktok.identity import IdentityStore, SQLiteIdentityStore
from cdp_tiktok.identity_cache import CachedIdentityStore
from cdp_tiktok.messages import validate_message
from cdp_tiktok.tiktok.destination import TikTokPlugin

FLUSH_EVERY_MESSAGES = 1_000  # send's ENQUEUE_CHUNK: it flushes before each commit
TTL = 90 * 86400.0
Opener = Callable[[Path], IdentityStore]


def _uncached(path: Path) -> IdentityStore:
    return SQLiteIdentityStore(path, TTL)


def _cached(path: Path) -> IdentityStore:
    return CachedIdentityStore(SQLiteIdentityStore(path, TTL))


def _hashed(text: str) -> str:
    return hashlib.sha256(text.strip().lower().encode()).hexdigest()


def identity_calls(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The destination's identity calls for ``messages`` (hashing done beforehand)."""
    calls: list[tuple[Any, ...]] = []
    for message in messages:
        ids = (message.get("userId"), message.get("anonymousId"))
        if message["type"] == "identify":
            traits = message["traits"]
            keys = {"email": [_hashed(traits["email"])], "phone": [_hashed(traits["phone"])]}
            calls.append(("remember", *ids, keys))
        else:
            calls.append(("lookup", *ids))
    return calls


def run_calls(calls: list[tuple[Any, ...]], open_store: Opener) -> float:
    """Seconds to replay ``calls`` on a fresh store (opening excluded, closing included)."""
    with tempfile.TemporaryDirectory() as directory:
        store = open_store(Path(directory, "identity.db"))
        flush = getattr(store, "flush", lambda: None)
        gc.collect()
        started = time.perf_counter()
        for index, call in enumerate(calls, 1):
            if call[0] == "remember":
                store.remember(call[1], call[2], call[3])
            else:
                store.lookup(call[1], call[2])
            if index % FLUSH_EVERY_MESSAGES == 0:
                flush()
        store.close()
        return time.perf_counter() - started


def run_host(messages: list[dict[str, Any]], open_store: Opener) -> float:
    """Seconds of ``Host.process`` over ``messages`` with a fresh store (compiling the
    mappings and opening the store excluded, closing included)."""
    with tempfile.TemporaryDirectory() as directory:
        host = Host(settings(), identity=open_store(Path(directory, "identity.db")))
        plugin = host.plugin("tiktok")
        assert isinstance(plugin, TikTokPlugin)
        for destination in host.destinations.values():
            plugin.mapping_set(destination)
        gc.collect()
        started = time.perf_counter()
        for index, message in enumerate(messages, 1):
            host.process(message, validated=True)
            if index % FLUSH_EVERY_MESSAGES == 0:
                host.flush()
        host.close()
        return time.perf_counter() - started


def interleaved(name: str, rounds: int, run: Callable[[Opener], float]) -> None:
    """Print ``rounds`` interleaved rounds of ``run`` with each store, then the medians."""
    plain, cached, ratios, loads = [], [], [], []
    for index in range(rounds):
        before = load_1min()
        slow, fast = run(_uncached), run(_cached)
        sampled = [before, load_1min()]
        loads.append(sampled)
        plain.append(slow)
        cached.append(fast)
        ratios.append(slow / fast)
        print(
            f"{name} round {index + 1} ({round_note(sampled)}): uncached {slow:.3f} s, "
            f"cached {fast:.3f} s ({slow / fast:.2f}x)",
            flush=True,
        )
    print(
        f"{name}: uncached {statistics.median(plain):.3f} s, cached "
        f"{statistics.median(cached):.3f} s (medians of {rounds}); median ratio "
        f"uncached/cached {statistics.median(ratios):.2f}x; {summary_note(loads)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    shop = Shop(args.seed, args.users)
    messages = [validate_message(shop.message(i)) for i in range(args.messages)]
    calls = identity_calls(messages)
    remembers = sum(1 for call in calls if call[0] == "remember")
    print(
        f"python {sys.version.split()[0]}, {args.messages:,} messages of {args.users:,} "
        f"people ({remembers:,} identify calls), {args.rounds} interleaved rounds"
    )
    interleaved("calls", args.rounds, lambda store: run_calls(calls, store))
    interleaved("host", args.rounds, lambda store: run_host(messages, store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
