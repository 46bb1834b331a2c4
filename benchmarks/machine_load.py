"""The machine's load, so that a benchmark can say when a round ran on a busy machine.

A round is called unreliable when the 1-minute load average, sampled at any of the
round's measurements, exceeds the number of CPUs: more tasks were runnable than there
were cores, so the timed processes waited for a CPU and the timings measure the
neighbours as much as the code. The benchmark's own processes count too (a benchmark
that keeps both cores of a 2-core machine busy by itself stays at about 2).
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def cpus() -> int:
    """The number of CPUs the load average is compared with (at least 1)."""
    return os.cpu_count() or 1


def load_1min() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]


def is_busy(loads: Sequence[float]) -> bool:
    """True when any sampled load average exceeds the CPU count (the round is unreliable)."""
    return any(load > cpus() for load in loads)


def round_note(loads: Sequence[float]) -> str:
    """``load 1.62-2.10`` plus, when the machine was busy, why the round is unreliable."""
    low, high = min(loads), max(loads)
    span = f"load {low:.2f}" if high - low < 0.005 else f"load {low:.2f}-{high:.2f}"
    if is_busy(loads):
        return f"{span}; UNRELIABLE: load above {cpus()} CPUs"
    return span


def summary_note(rounds: Sequence[Sequence[float]]) -> str:
    """One line on the load over all rounds: its range and how many rounds were busy."""
    every = [load for loads in rounds for load in loads]
    busy = sum(1 for loads in rounds if is_busy(loads))
    verdict = (
        "every round reliable"
        if busy == 0
        else f"{busy} of {len(rounds)} round(s) UNRELIABLE (load above the CPU count); "
        "medians include them, re-run on a quieter machine"
    )
    return f"load average {min(every):.2f}-{max(every):.2f} on {cpus()} CPUs: {verdict}"
