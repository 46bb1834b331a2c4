"""Benchmark: delivery throughput to the sandbox in another process, and peak memory.

Throughput mode (default) generates ``--events`` realistic mapped events (hashed match
keys, contents) into a JSON Lines file, starts ``python -m cdp_tiktok.sandbox --port 0``
and measures, in the same run:

* the baseline: the same events pre-encoded into requests of 1,000 events, posted with a
  bare ``httpx.Client`` from as many threads as the deliverer's concurrency;
* end to end: read the JSONL file, enqueue into a fresh SQLite outbox, then
  ``Deliverer.run(drain=True)``.

Goals: end to end >= 20,000 events/s and at most 2x the baseline's time.

``--memory`` streams a 1,000,000-event file (or ``--events``) through enqueue and delivery
and reports this process's peak RSS (goal < 300 MB). The sandbox then keeps no events in
memory (``memory_limit=0``) so that it can absorb a million events.

Run: ``python benchmarks/bench_deliver.py [--events N] [--concurrency C] [--memory]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from cdp_tiktok.delivery.outbox import open_outbox
from cdp_tiktok.delivery.worker import Deliverer
from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN, SANDBOX_PIXEL_CODE, Secret, TikTokSettings
from cdp_tiktok.tiktok.payload import ENDPOINT_PATH, build_request, encode_request

GOAL_EVENTS_PER_SECOND = 20_000
GOAL_RATIO = 2.0
GOAL_PEAK_RSS_MB = 300
ENQUEUE_CHUNK = 5_000
KEY = BatchKey("TikTok", "web", SANDBOX_PIXEL_CODE, None)
EVENTS = ["CompletePayment", "AddToCart", "ViewContent", "InitiateCheckout", "Pageview"]
_SANDBOX_NO_MEMORY = (
    "import sys, time\n"
    "from cdp_tiktok.sandbox.server import SandboxServer\n"
    "server = SandboxServer(port=0, memory_limit=0).start()\n"
    "print(server.url, flush=True)\n"
    "sys.stdin.read()\n"
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_event(rng: random.Random, n: int) -> dict[str, Any]:
    """One mapped TikTok ``data[]`` item, as the mapping stage produces it."""
    user = rng.randrange(50_000)
    items: list[dict[str, Any]] = [
        {
            "content_id": f"sku-{rng.randrange(5_000)}",
            "content_name": f"Product {rng.randrange(5_000)}",
            "price": round(rng.uniform(2, 200), 2),
            "quantity": rng.randint(1, 4),
        }
        for _ in range(rng.randint(1, 3))
    ]
    return {
        "event": rng.choice(EVENTS),
        "event_time": 1_732_500_000 + n,
        "event_id": f"msg-{n:09d}-{rng.getrandbits(32):08x}",
        "user": {
            "email": [sha(f"user{user}@example.com")],
            "phone": [sha(f"+1415555{user:04d}")],
            "external_id": [sha(f"crm_{user:08d}")],
            "ttclid": f"E.C.P.{rng.getrandbits(64):016x}",
            "ip": f"203.0.{user % 256}.{rng.randrange(256)}",
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15",
        },
        "page": {"url": f"https://shop.example.com/products/{rng.randrange(5_000)}"},
        "properties": {
            "currency": "USD",
            "value": round(sum(float(i["price"]) * int(i["quantity"]) for i in items), 2),
            "content_type": "product",
            "contents": items,
            "order_id": f"order-{n}",
        },
    }


def write_events(path: Path, count: int, seed: int = 7) -> None:
    """Stream ``count`` events as JSON Lines ``{"key": ..., "data": ...}``."""
    rng = random.Random(seed)
    key = {"destination": KEY.destination, "event_source": KEY.event_source,
           "event_source_id": KEY.event_source_id, "test_event_code": None}  # fmt: skip
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            out.write(json.dumps({"key": key, "data": make_event(rng, n)}) + "\n")


def read_events(path: Path) -> Iterator[OutgoingEvent]:
    """Stream the JSONL file back as outgoing events."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            yield OutgoingEvent(BatchKey(**record["key"]), record["data"])


def start_sandbox(*, keep_events: bool) -> tuple[subprocess.Popen[str], str]:
    """Start the sandbox in another process; return it and its base URL."""
    if keep_events:
        command = [sys.executable, "-m", "cdp_tiktok.sandbox", "--port", "0"]
    else:
        command = [sys.executable, "-c", _SANDBOX_NO_MEMORY]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise SystemExit(f"the sandbox did not start (said {url!r})")
    return process, url


def sandbox_stats(url: str) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(f"{url}/sandbox/stats").json()
    return stats


def reset_sandbox(url: str) -> None:
    httpx.post(f"{url}/sandbox/reset").raise_for_status()


def baseline(path: Path, url: str, concurrency: int) -> float:
    """Seconds to POST the file's events, pre-encoded in batches of 1,000, with bare httpx."""
    bodies: list[bytes] = []
    batch: list[dict[str, Any]] = []
    for event in read_events(path):
        batch.append(event.data)
        if len(batch) == 1000:
            bodies.append(encode_request(build_request(KEY, batch, "cdp_tiktok")))
            batch = []
    if batch:
        bodies.append(encode_request(build_request(KEY, batch, "cdp_tiktok")))
    headers = {"Access-Token": SANDBOX_ACCESS_TOKEN, "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=30.0, limits=limits) as client:

        def post(body: bytes) -> None:
            answer = client.post(url + ENDPOINT_PATH, content=body, headers=headers)
            if answer.json().get("code") != 0:
                raise SystemExit(f"baseline request refused: {answer.text[:200]}")

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, bodies))
        return time.perf_counter() - started


def end_to_end(path: Path, url: str, concurrency: int, workdir: Path) -> tuple[float, float]:
    """Seconds to enqueue the file into a fresh outbox, and seconds to deliver it."""
    outbox = open_outbox(f"sqlite:///{workdir / f'outbox-{time.time_ns()}.db'}")
    started = time.perf_counter()
    chunk: list[OutgoingEvent] = []
    for event in read_events(path):
        chunk.append(event)
        if len(chunk) == ENQUEUE_CHUNK:
            outbox.enqueue(chunk)
            chunk = []
    if chunk:
        outbox.enqueue(chunk)
    enqueued = time.perf_counter()
    settings = TikTokSettings(
        event_source_id=SANDBOX_PIXEL_CODE,
        access_token=Secret(SANDBOX_ACCESS_TOKEN),
        endpoint=url,
        concurrency=concurrency,
    ).validate()
    report = Deliverer(outbox, {KEY.destination: settings}).run(drain=True)
    done = time.perf_counter()
    if report.dead or report.stopped:
        raise SystemExit(f"delivery failed: {report}")
    outbox.close()
    return enqueued - started, done - enqueued


def throughput(events: int, concurrency: int) -> int:
    with tempfile.TemporaryDirectory(prefix="bench_deliver_") as tmp:
        workdir = Path(tmp)
        path = workdir / "events.jsonl"
        write_events(path, events)
        process, url = start_sandbox(keep_events=True)
        try:
            base = baseline(path, url, concurrency)
            accepted = sandbox_stats(url)["accepted_events"]
            reset_sandbox(url)
            enqueue_s, deliver_s = end_to_end(path, url, concurrency, workdir)
            delivered = sandbox_stats(url)["accepted_events"]
        finally:
            process.terminate()
            process.wait(timeout=10)
    total = enqueue_s + deliver_s
    assert accepted == events and delivered >= events, (accepted, delivered)
    rate = events / total
    ratio = total / base
    print(f"events: {events:,}  concurrency: {concurrency}")
    print(f"baseline (bare httpx, pre-encoded): {events / base:>10,.0f} events/s  ({base:.2f} s)")
    print(f"end to end (JSONL -> outbox -> Deliverer): {rate:>10,.0f} events/s  ({total:.2f} s)")
    enqueue_rate, deliver_rate = events / enqueue_s, events / deliver_s
    print(f"  enqueue: {enqueue_rate:,.0f} events/s  deliver: {deliver_rate:,.0f} events/s")
    print(f"ratio end-to-end / baseline time: {ratio:.2f}x (goal <= {GOAL_RATIO}x)")
    ok = rate >= GOAL_EVENTS_PER_SECOND and ratio <= GOAL_RATIO
    print("goals met" if ok else "GOALS NOT MET")
    return 0 if ok else 1


def memory(events: int, concurrency: int) -> int:
    with tempfile.TemporaryDirectory(prefix="bench_deliver_mem_") as tmp:
        workdir = Path(tmp)
        path = workdir / "events.jsonl"
        write_events(path, events)
        process, url = start_sandbox(keep_events=False)
        try:
            enqueue_s, deliver_s = end_to_end(path, url, concurrency, workdir)
            delivered = sandbox_stats(url)["accepted_events"]
        finally:
            process.kill()
            process.wait(timeout=10)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"events: {events:,} streamed; sandbox accepted {delivered:,}")
    print(f"enqueue {enqueue_s:.1f} s, deliver {deliver_s:.1f} s "
          f"({events / (enqueue_s + deliver_s):,.0f} events/s end to end)")  # fmt: skip
    print(f"peak RSS of this process: {peak_mb:.0f} MB (goal < {GOAL_PEAK_RSS_MB} MB)")
    return 0 if peak_mb < GOAL_PEAK_RSS_MB and delivered >= events else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events", type=int, default=None, help="events (100,000; 1,000,000 with --memory)"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--memory", action="store_true", help="stream 1M events, report peak RSS")
    args = parser.parse_args()
    if args.memory:
        return memory(args.events or 1_000_000, args.concurrency)
    return throughput(args.events or 100_000, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
