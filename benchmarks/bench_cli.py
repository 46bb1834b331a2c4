"""Benchmark: whole processes of ``cdp-tiktok map`` and ``cdp-tiktok send --sandbox``.

What a user runs, timed from process start to exit, on JSON Lines files of realistic
Segment messages made by the shop generator of ``bench_map.py`` (deterministic; page,
identify, product and order calls of 5,000 people), against the baseline of issue 13: a
bare Python process that reads each line, ``json.loads`` it, SHA-256-hashes an e-mail
(the message's traits e-mail, else its user or anonymous id, trimmed and lower-cased) and
writes a small JSON object per line. Per size, the rounds are interleaved (bare, map,
send, bare, map, send, ...), each process started fresh:

* ``bare``: ``python -c <the loop> FILE > /dev/null``;
* ``map``: ``python -m cdp_tiktok map FILE > /dev/null`` (the per-message notes and the
  summary go to a file; the summary is checked: every message read);
* ``send``: ``python -m cdp_tiktok send FILE --sandbox`` in a fresh temporary working
  directory per round, so its default sandbox outbox and identity store start empty
  (nothing is written in the repository); its summary must say every event was
  delivered.

Prints, per size and process, the wall time min/median/max, messages/s (and TikTok
events/s for ``send``) at the median, the median of the per-round ratios to the bare
loop, CPU time (user + system of the child, steadier on a shared machine), the child's
peak RSS (``os.wait4``; a child starts as a fork of this script, so it never reads below
this script's own few MiB, printed first), and the 1-minute load average at each
measurement; a round is flagged UNRELIABLE when the load exceeds the CPU count. One
summary line per figure.

Goals (issue 13, on 100k messages): ``map`` within 2.5x the bare loop; ``send --sandbox``
at least 20,000 events/s with a peak RSS under 100 MiB. Verdicts are printed for every
size; the goals are about 100k.

Run: ``python benchmarks/bench_cli.py [--quick] [--sizes 10k 100k 1M] [--rounds R]
[--only map|send]``. ``--quick`` is ``--sizes 10k --rounds 9`` (under a minute here).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from machine_load import load_1min, round_note, summary_note
from rounds import Paired, paired_medians

GOAL_MAP_RATIO = 2.5
GOAL_SEND_EVENTS_PER_SECOND = 20_000
GOAL_SEND_PEAK_MIB = 100
GOAL_SIZE = 100_000
SEED = 7
USERS = 5_000
COMMANDS = ("map", "send")
SUFFIXES = {"k": 1_000, "m": 1_000_000}

BARE_LOOP = """
import hashlib, json, sys
dumps, loads, sha256, write = json.dumps, json.loads, hashlib.sha256, sys.stdout.write
with open(sys.argv[1], encoding="utf-8") as lines:
    for line in lines:
        message = loads(line)
        traits = message.get("traits") or message.get("context", {}).get("traits") or {}
        email = traits.get("email") or message.get("userId") or message.get("anonymousId", "")
        digest = sha256(email.strip().lower().encode()).hexdigest()
        event = message.get("event") or message.get("type")
        write(dumps({"event": event, "event_id": message.get("messageId"),
                     "user": {"email": [digest]}}, separators=(",", ":")) + "\\n")
"""
MAP_SUMMARY = re.compile(r"^(\d+) message\(s\): (\d+) event\(s\)", re.MULTILINE)
SEND_DELIVERED = re.compile(r"^\W*delivered\W+(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Run:
    """One finished child process."""

    wall: float  # seconds from start to exit
    cpu: float  # user + system seconds of the child
    peak_mib: float  # its peak resident set size
    load: float  # 1-minute load average when it started
    events: int  # TikTok events it produced (0 for the bare loop)


def parse_size(text: str) -> int:
    """``10k`` -> 10,000; ``1M`` -> 1,000,000; ``2500`` -> 2,500."""
    unit = SUFFIXES.get(text[-1:].lower(), 1)
    digits = text[:-1] if unit > 1 else text
    try:
        size = int(float(digits.replace("_", "").replace(",", "")) * unit)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10k, 100k, 1M)") from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"a size must be at least 1, not {text!r}")
    return size


def label(size: int) -> str:
    """``100000`` -> ``100k``."""
    if size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


def child_env() -> dict[str, str]:
    """This environment without ``CDP_TIKTOK_*`` settings, so every run sees the defaults."""
    return {name: value for name, value in os.environ.items() if not name.startswith("CDP_TIKTOK_")}


def run_child(command: Sequence[str], *, cwd: Path, stdout: Path | None, stderr: Path) -> Run:
    """Run ``command`` to its end; its wall time, CPU time and peak RSS from ``os.wait4``."""
    load = load_1min()
    with (
        open(stdout or os.devnull, "wb") as out,
        stderr.open("wb") as err,
    ):
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=cwd, env=child_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = stderr.read_text(errors="replace").strip().splitlines()[-5:]
        raise SystemExit(f"{' '.join(command[:4])} ... exited {process.returncode}: {tail}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, load, 0)


def compile_package() -> str:
    """Compile the package's bytecode where Python looks for it, as ``pip install``
    leaves an installed package: a checkout run with PYTHONDONTWRITEBYTECODE set (as on
    this machine) would otherwise compile every module from source in every child,
    ~0.14 s a process that no installed user pays. Returns the line to print."""
    import compileall

    import cdp_tiktok

    package = Path(cdp_tiktok.__file__).parent
    ok = compileall.compile_dir(package, quiet=1, legacy=False)
    if not ok:
        raise SystemExit(f"could not compile the bytecode of {package}")
    return f"bytecode of {package} compiled (as an installed package has it)"


def generate(path: Path, size: int) -> None:
    """Write ``size`` shop messages to ``path`` with ``bench_map.write_jsonl``.

    In a child process: this process stays small (no ``cdp_tiktok`` imported), because a
    child starts as its fork and its peak RSS can never read below this process's own.
    """
    code = "import sys; from bench_map import write_jsonl; " + (
        f"write_jsonl(__import__('pathlib').Path(sys.argv[1]), {size}, {SEED}, {USERS})"
    )
    env = {**child_env(), "PYTHONPATH": str(Path(__file__).resolve().parent)}
    subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True)


def run_bare(path: Path, work: Path) -> Run:
    return run_child(
        [sys.executable, "-c", BARE_LOOP, str(path)], cwd=work, stdout=None, stderr=work / "err"
    )


def run_map(path: Path, work: Path, messages: int) -> Run:
    errors = work / "map.err"
    run = run_child(
        [sys.executable, "-m", "cdp_tiktok", "map", str(path)],
        cwd=work,
        stdout=None,
        stderr=errors,
    )
    found = MAP_SUMMARY.findall(errors.read_text(encoding="utf-8", errors="replace"))
    if not found or int(found[-1][0]) != messages:
        raise SystemExit(f"cdp-tiktok map did not read {messages:,} messages: {found}")
    return Run(run.wall, run.cpu, run.peak_mib, run.load, int(found[-1][1]))


def run_send(path: Path, work: Path, events: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="send_", dir=work) as fresh:
        directory = Path(fresh)
        report = directory / "send.out"
        run = run_child(
            [sys.executable, "-m", "cdp_tiktok", "send", str(path), "--sandbox"],
            cwd=directory,
            stdout=report,
            stderr=directory / "send.err",
        )
        found = SEND_DELIVERED.findall(report.read_text(encoding="utf-8", errors="replace"))
    if not found or int(found[0]) != events:
        raise SystemExit(f"cdp-tiktok send --sandbox did not deliver {events:,} events: {found}")
    return Run(run.wall, run.cpu, run.peak_mib, run.load, events)


def spread(seconds: Sequence[float]) -> str:
    """``1.20/1.31/1.90 s (min/median/max)``."""
    low, middle, high = min(seconds), statistics.median(seconds), max(seconds)
    return f"{low:.2f}/{middle:.2f}/{high:.2f} s (min/median/max)"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def bench_size(size: int, rounds: int, only: Sequence[str], work: Path) -> None:
    """Generate ``size`` messages, run the interleaved rounds, print the summary lines."""
    path = work / f"messages-{label(size)}.jsonl"
    started = time.perf_counter()
    generate(path, size)
    print(
        f"\n== {label(size)} messages ({path.stat().st_size / 2**20:,.0f} MiB of JSON Lines, "
        f"generated in {time.perf_counter() - started:.1f} s), {rounds} interleaved rounds",
        flush=True,
    )
    runs: dict[str, list[Run]] = {"bare": [], "map": [], "send": []}
    events = 0
    loads: list[list[float]] = []
    for round_ in range(rounds):
        bare = run_bare(path, work)
        runs["bare"].append(bare)
        parts = [f"bare {bare.wall:.2f} s {bare.peak_mib:.0f} MiB"]
        samples = [bare.load]
        if "map" in only or not events:
            mapped = run_map(path, work, size)
            events = mapped.events
            if "map" in only:
                runs["map"].append(mapped)
                samples.append(mapped.load)
                parts.append(
                    f"map {mapped.wall:.2f} s ({mapped.wall / bare.wall:.2f}x) "
                    f"{mapped.peak_mib:.0f} MiB"
                )
        if "send" in only:
            sent = run_send(path, work, events)
            runs["send"].append(sent)
            samples.append(sent.load)
            parts.append(
                f"send {sent.wall:.2f} s ({sent.wall / bare.wall:.2f}x) {sent.peak_mib:.0f} MiB"
            )
        samples.append(load_1min())
        loads.append(samples)
        print(f"round {round_ + 1} ({round_note(samples)}): " + ", ".join(parts), flush=True)
    path.unlink()
    print_summary(size, runs, events)
    print(f"{label(size)} {summary_note(loads)}", flush=True)


def figure(runs: Sequence[Run], bare: Sequence[Run]) -> tuple[Paired, float]:
    """The paired medians of one command's rounds and the highest peak RSS of any round."""
    return paired_medians(runs, bare), max(r.peak_mib for r in runs)


def print_summary(size: int, runs: dict[str, list[Run]], events: int) -> None:
    """One line per figure: bare loop, map, send (goal verdicts at the goals' size)."""
    name, at_goal_size = label(size), size == GOAL_SIZE
    bare, bare_peak = figure(runs["bare"], runs["bare"])
    print(
        f"{name} bare loop: wall {spread(bare.walls)}, {size / bare.wall:,.0f} messages/s, "
        f"cpu {bare.cpu:.2f} s, peak RSS {bare_peak:.0f} MiB"
    )
    if runs["map"]:
        mapped, mapped_peak = figure(runs["map"], runs["bare"])
        goal = f" (goal <= {GOAL_MAP_RATIO}x: {verdict(mapped.ratio <= GOAL_MAP_RATIO)})"
        print(
            f"{name} cdp-tiktok map: wall {spread(mapped.walls)}, {size / mapped.wall:,.0f} "
            f"messages/s, {events:,} events; median ratio to bare {mapped.ratio:.2f}x wall"
            f"{goal if at_goal_size else ''}, {mapped.cpu_ratio:.2f}x cpu; "
            f"peak RSS {mapped_peak:.0f} MiB"
        )
    if runs["send"]:
        sent, sent_peak = figure(runs["send"], runs["bare"])
        rate = events / sent.wall
        goals = (
            f" (goal >= {GOAL_SEND_EVENTS_PER_SECOND:,} events/s: "
            f"{verdict(rate >= GOAL_SEND_EVENTS_PER_SECOND)}; goal < {GOAL_SEND_PEAK_MIB} "
            f"MiB: {verdict(sent_peak < GOAL_SEND_PEAK_MIB)})"
        )
        print(
            f"{name} cdp-tiktok send --sandbox: wall {spread(sent.walls)}, {size / sent.wall:,.0f} "
            f"messages/s, {rate:,.0f} events/s; median ratio to bare {sent.ratio:.2f}x wall, "
            f"{sent.cpu_ratio:.2f}x cpu; peak RSS {sent_peak:.0f} MiB"
            f"{goals if at_goal_size else ''}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[10_000, 100_000, 1_000_000],
        metavar="N",
        help="messages per file, e.g. 10k 100k 1M (default: all three)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size")
    parser.add_argument(
        "--only", choices=COMMANDS, action="append", help="time only this command (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="10k messages, 9 rounds")
    args = parser.parse_args(argv)
    sizes, rounds = ([10_000], 9) if args.quick else (args.sizes, args.rounds)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    only = args.only or list(COMMANDS)
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, sizes "
        f"{', '.join(label(s) for s in sizes)}, {rounds} rounds, commands: {', '.join(only)}; "
        f"this script's peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
        " MiB (the floor of a child's)"
    )
    print(compile_package(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as tmp:
        for size in sizes:
            bench_size(size, rounds, only, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
