"""Benchmark: messages per second the intake accepts durably on ``/v1/batch``.

Starts, as separate processes on loopback:

* the baseline: a bare starlette handler (served by uvicorn the same way) that only
  reads the body, parses its JSON and answers ``{"success": true}``;
* ``cdp-tiktok serve --no-worker`` (intake only) on a fresh SQLite outbox;
* ``cdp-tiktok serve`` with its embedded worker, delivering to a sandbox process
  (``python -m cdp_tiktok.sandbox``).

Then, in interleaved rounds, a client process (one asyncio loop, ``--concurrency``
keep-alive connections, whole requests encoded before timing and written to raw
sockets, so that it takes little of the shared CPUs) posts ``--messages`` realistic
track messages in batches of ``--batch`` (100, what analytics-python sends) to each
server, and reports messages/s accepted (HTTP 200), the messages per CPU-second of the
server process (steadier on a shared machine), the cost per message relative to the
baseline (the ratio) and the CPUs the client itself used, as the median over
``--rounds``, with the load average of each round (``machine_load.py``). "Accepted" for
the intake means validated, mapped, hashed and committed to the outbox (WAL,
synchronous=FULL). After each measurement the next waits until every server (and the
sandbox) is idle, so that no round runs beside another server's delivery; the
worker-on server's CPU therefore includes delivering what its round enqueued.

Goal (issue 11): >= 20,000 messages/s with the worker off, on a 2-core machine.

``--workers N`` starts the intakes as ``serve --workers N`` (the server CPU is then that
of the supervisor and all its live children) and adds a one-process worker-off intake to
the same rounds, so that both figures come from one run. ``--against DIR`` adds the
worker-off intake of another source tree (``PYTHONPATH=DIR``, e.g. the main branch) to
the same rounds.

``--profile PATH`` instead runs the worker-off intake alone, in this file's harness, under
pyinstrument (the event loop, map and write threads each sampled; wall time) and writes
the profiles to ``PATH.THREAD.txt``; ``--thread-cpu PATH`` runs the same harness
unsampled and prints each thread's CPU per message for every round.

Run: ``python benchmarks/bench_intake.py [--messages N] [--rounds R] [--concurrency C]
[--workers N] [--against DIR] [--profile PATH | --thread-cpu PATH]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from machine_load import cpus, load_1min, round_note, summary_note

GOAL_MESSAGES_PER_SECOND = 20_000
WRITE_KEY = "bench-write-key"
AGAINST = "other tree"
ONE_PROCESS = "off, 1 proc"
"""With ``--workers N`` (N > 1): the worker-off intake as one process, in the same rounds."""
BANNER = re.compile(r"listening on (http://\S+)")


# --- the baseline server -------------------------------------------------------------------


def baseline_server() -> None:
    """A bare starlette app: read, parse JSON, answer success. Prints its URL."""
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def batch(request: Request) -> JSONResponse:
        json.loads(await request.body())
        return JSONResponse({"success": True})

    app = Starlette(routes=[Route("/v1/batch", batch, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


# --- the client process --------------------------------------------------------------------


def message(index: int, run: str) -> dict[str, Any]:
    """A realistic analytics-python track call (~700 bytes as JSON)."""
    return {
        "type": "track",
        "event": "Order Completed" if index % 4 == 0 else "Product Added",
        "userId": f"user-{index % 5000}",
        "anonymousId": f"anon-{index % 7000:08d}-3b1c-4a2e-9f1e-3c1d2e4f5a6b",
        "messageId": f"{run}-{index}",
        "timestamp": "2026-12-01T10:00:00.000Z",
        "properties": {
            "order_id": f"o-{index}",
            "product_id": f"sku-{index % 300}",
            "price": 19.99,
            "quantity": 1 + index % 3,
            "revenue": 19.99,
            "currency": "USD",
        },
        "context": {
            "ip": f"203.0.113.{index % 250}",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0",
            "page": {"url": f"https://shop.example/p/{index % 300}", "title": "Shop"},
            "traits": {"email": f"user{index % 5000}@example.com"},
            "library": {"name": "analytics-python", "version": "2.3.3"},
        },
        "integrations": {},
    }


def client(url: str, messages: int, batch: int, concurrency: int, run: str) -> None:
    """Post ``messages`` in batches over ``concurrency`` keep-alive connections from one
    asyncio loop; print a JSON result with the client's own CPU time.

    Requests are whole HTTP/1.1 messages encoded before timing and written to raw
    sockets, so the client spends as little of the shared CPUs as it can.
    """
    import asyncio
    import resource
    from urllib.parse import urlsplit

    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    requests = []
    for start in range(0, messages, batch):
        items = [message(i, run) for i in range(start, min(start + batch, messages))]
        body = json.dumps({"batch": items}).encode()
        head = (
            f"POST /v1/batch HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append((head.encode() + body, len(items)))
    pending = list(reversed(requests))
    accepted = [0]
    refused: dict[int, int] = {}

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while pending:
                request, count = pending.pop()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                if status == 200:
                    accepted[0] += count
                else:
                    refused[status] = refused.get(status, 0) + 1
        finally:
            writer.close()

    async def main() -> None:
        await asyncio.gather(*(connection() for _ in range(concurrency)))

    used = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    asyncio.run(main())
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
    print(json.dumps({"seconds": seconds, "accepted": accepted[0], "refused": refused, "cpu": cpu}))


# --- orchestration ---------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (``serve --workers N`` runs N children)."""
    found = [pid]
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            found.extend(descendants(int(child)))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its live descendants, from /proc."""
    total = 0
    for each in descendants(pid):
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def settle(pids: list[int], seconds: float = 120.0) -> None:
    """Wait (at most ``seconds``) until the processes ``pids`` are idle: under 5% of a CPU
    over half a second. So that no round is measured while another server is still
    delivering or committing what an earlier round sent it."""
    deadline = time.monotonic() + seconds
    used = sum(cpu_seconds(pid) for pid in pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(cpu_seconds(pid) for pid in pids)
        if now - used < 0.025:
            return
        used = now


@contextmanager
def server(
    command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[tuple[str, int]]:
    """Start ``command``; yield the URL from its ``listening on`` line and its pid."""
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd
    )
    assert process.stderr is not None
    url = None
    for line in process.stderr:
        found = BANNER.search(line)
        if found:
            url = found.group(1)
            break
    if url is None:
        raise SystemExit(f"server did not start: {command}")
    threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True).start()
    try:
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


def sandbox_process() -> Any:
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp_tiktok.sandbox", "--port", "0", "--memory-limit", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def measure(url: str, args: argparse.Namespace, run: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--client", url, "--messages", str(args.messages),
         "--batch", str(args.batch), "--concurrency", str(args.concurrency), "--run", run],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def serve_command(tmp: Path, name: str, endpoint: str | None, workers: int) -> list[str]:
    command = [
        sys.executable, "-m", "cdp_tiktok", "serve", "--port", "0", "--workers", str(workers),
        "--write-key", f"bench={WRITE_KEY}", "--log-level", "warning",
        "--outbox", f"sqlite:///{tmp / (name + '-outbox.db')}",
        "--identity", f"sqlite:///{tmp / (name + '-identity.db')}",
        "--pixel-code", "CBENCHPIXEL000000001", "--access-token", "sandbox-token",
    ]  # fmt: skip
    if endpoint is None:
        return [*command, "--no-worker"]
    return [*command, "--endpoint", endpoint]


THREADS = ("loop", "map_loop", "write_loop")
"""The threads of one intake process that run Python: the event loop, mapping, writing."""


def profiled_serve(argv: list[str], out: Path, sample: bool) -> None:
    """Run ``cdp-tiktok serve`` in this process; write the native id of each of
    :data:`THREADS` to ``out.NAME.tid`` (for :func:`thread_cpu`) and, with ``sample``, its
    pyinstrument profile (wall time) to ``out.NAME.txt`` when it ends."""
    from pyinstrument import Profiler

    from cdp_tiktok.cli import main as cli
    from cdp_tiktok.ingest.pipeline import Pipeline

    def measured(run: Callable[[], None], name: str) -> None:
        out.with_suffix(f".{name}.tid").write_text(str(threading.get_native_id()))
        profiler = Profiler(interval=0.001, async_mode="disabled") if sample else None
        if profiler is not None:
            profiler.start()
        try:
            run()
        finally:
            if profiler is not None:
                profiler.stop()
                text = profiler.output_text(unicode=False, show_all=False)
                out.with_suffix(f".{name}.txt").write_text(text)

    def wrap(method: Any, name: str) -> Any:
        return lambda self: measured(lambda: method(self), name)

    for name in THREADS[1:]:
        setattr(Pipeline, f"_{name}", wrap(getattr(Pipeline, f"_{name}"), name))
    measured(lambda: cli(argv, standalone_mode=False), THREADS[0])


def thread_cpu(pid: int, out: Path) -> dict[str, float]:
    """CPU seconds so far of each of :data:`THREADS` of the harness process ``pid``."""
    found = {}
    for name in THREADS:
        tid = out.with_suffix(f".{name}.tid")
        if tid.exists():
            stat = Path(f"/proc/{pid}/task/{tid.read_text()}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            found[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="serve --workers (processes)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the worker-off intake alone (one process, in the harness) instead, and "
        "write PROFILE.THREAD.txt (pyinstrument) for its event loop, map and write threads",
    )
    parser.add_argument(
        "--thread-cpu",
        type=Path,
        help="like --profile without sampling: only each thread's CPU time (files PATH.*)",
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="also measure the worker-off intake of another source tree (e.g. /work/main) "
        "in the same rounds",
    )
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--run", default="r", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profiled-serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sample", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.baseline_server:
        baseline_server()
        return
    if args.client:
        client(args.client, args.messages, args.batch, args.concurrency, args.run)
        return
    if args.profiled_serve:
        profiled_serve(rest, args.profiled_serve, args.sample)
        return

    env = {**os.environ, "CDP_TIKTOK_DEFAULT_PAGE_URL": "https://shop.example/"}
    harness = args.profile or args.thread_cpu
    names = ["worker off"] if harness else ["baseline", "worker off", "worker on"]
    if args.workers > 1 and not harness:
        names.append(ONE_PROCESS)
    if args.against and not harness:
        names.append(AGAINST)
    results: dict[str, list[float]] = {name: [] for name in names}
    per_cpu: dict[str, list[float]] = {name: [] for name in names}
    client_cpu: dict[str, list[float]] = {name: [] for name in names}
    loads: list[list[float]] = []
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        urls: dict[str, tuple[str, int]] = {}
        if harness:
            command = serve_command(tmp, "off", None, 1)
            profiled = [sys.executable, __file__, "--profiled-serve", str(harness)]
            profiled += ["--sample"] if args.profile else []
            urls["worker off"] = stack.enter_context(server([*profiled, *command[3:]], env))
        else:
            sandbox, sandbox_url = sandbox_process()
            stack.callback(sandbox.wait, 30)
            stack.callback(sandbox.terminate)
            baseline = [sys.executable, __file__, "--baseline-server"]
            urls["baseline"] = stack.enter_context(server(baseline))
            off = serve_command(tmp, "off", None, args.workers)
            urls["worker off"] = stack.enter_context(server(off, env))
            on = serve_command(tmp, "on", sandbox_url, args.workers)
            urls["worker on"] = stack.enter_context(server(on, env))
            if args.workers > 1:  # the one-process figure, measured beside the headline
                single = serve_command(tmp, "single", None, 1)
                urls[ONE_PROCESS] = stack.enter_context(server(single, env))
            if args.against:  # the same intake from another source tree, e.g. main's
                other = {**env, "PYTHONPATH": str(args.against)}
                command = serve_command(tmp, "against", None, args.workers)
                urls[AGAINST] = stack.enter_context(server(command, other, args.against))
        idle = [pid for _, pid in urls.values()]
        if not harness:
            idle.append(sandbox.pid)
        for round_number in range(args.rounds):
            samples = [load_1min()]
            parts = []
            for name, (url, pid) in urls.items():
                before = cpu_seconds(pid)
                threads_before = thread_cpu(pid, harness) if harness else {}
                found = measure(url, args, f"{name[:4]}{round_number}")
                # Until the servers are idle again: the worker-on server's CPU includes
                # delivering what this round enqueued (the wall-clock rate is the headline).
                settle(idle)
                cpu = cpu_seconds(pid) - before
                if harness:
                    threads = thread_cpu(pid, harness)
                    per_message = {
                        thread: (used - threads_before[thread]) / found["accepted"] * 1e6
                        for thread, used in threads.items()
                    }
                    print("  server CPU per message by thread (us): " + ", ".join(
                        f"{thread} {us:.1f}" for thread, us in per_message.items()
                    ))  # fmt: skip
                samples.append(load_1min())
                if found["refused"]:
                    print(f"  {name}: refused requests {found['refused']}", file=sys.stderr)
                rate = found["accepted"] / found["seconds"]
                results[name].append(rate)
                per_cpu[name].append(found["accepted"] / cpu if cpu else float("inf"))
                client_cpu[name].append(found["cpu"] / found["seconds"])
                parts.append(
                    f"{name} {rate:,.0f}/s wall, {per_cpu[name][-1]:,.0f}/server CPU-s, "
                    f"client {client_cpu[name][-1]:.2f} CPU"
                )
            loads.append(samples)
            print(f"round {round_number + 1} ({round_note(samples)}): " + "; ".join(parts))
    medians = {name: statistics.median(rates) for name, rates in results.items()}
    cpu_medians = {name: statistics.median(rates) for name, rates in per_cpu.items()}
    print()
    print(f"messages: {args.messages} per round, batches of {args.batch}, "
          f"{args.concurrency} connections, serve --workers {args.workers}, "
          f"{args.rounds} rounds (median)")  # fmt: skip
    for name, rate in medians.items():
        ratio = cpu_medians.get("baseline", math.nan) / cpu_medians[name]
        print(
            f"{name:>11}: {rate:10,.0f} messages/s wall, {cpu_medians[name]:10,.0f} per server "
            f"CPU-second; cost per message {ratio:5.2f}x baseline (server CPU); client used "
            f"{statistics.median(client_cpu[name]):.2f} of {cpus()} CPUs"
        )
    if AGAINST in results:
        wall = [a / b for a, b in zip(results["worker off"], results[AGAINST], strict=True)]
        cpu = [a / b for a, b in zip(per_cpu["worker off"], per_cpu[AGAINST], strict=True)]
        print(
            f"worker off / {AGAINST} ({args.against}), median of per-round ratios: "
            f"{statistics.median(wall):.2f}x messages/s wall, "
            f"{statistics.median(cpu):.2f}x messages per server CPU-second"
        )
    print(summary_note(loads))
    goal = medians["worker off"] >= GOAL_MESSAGES_PER_SECOND
    how = f"serve --workers {args.workers}" if args.workers > 1 else "one process"
    print(
        f"goal >= {GOAL_MESSAGES_PER_SECOND:,} messages/s with the worker off: "
        f"{'met' if goal else 'NOT met'} ({how}: {medians['worker off']:,.0f}"
        + (f"; one process: {medians[ONE_PROCESS]:,.0f}" if ONE_PROCESS in medians else "")
        + ")"
    )
    if args.profile:
        print(f"profiles: {args.profile.with_suffix('.*.txt')}")


if __name__ == "__main__":
    main()
