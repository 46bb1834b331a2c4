"""Interleaved rounds and their medians, shared by the benchmarks.

A shared, noisy machine slows whole stretches of time, not single runs: a benchmark that
ran all of its baseline first and all of its candidate after would compare two different
machines. So every scenario runs once per round, in a fixed order, and a candidate is
compared with the baseline *of the same round*; the figure is the median of those
per-round ratios (a best-of figure would report the luckiest round, not the usual one).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from machine_load import load_1min

T = TypeVar("T")


class Timed(Protocol):
    """One measured run: its wall-clock and CPU seconds."""

    @property
    def wall(self) -> float: ...

    @property
    def cpu(self) -> float: ...


@dataclass(frozen=True)
class Paired:
    """The medians of one scenario's rounds, each round compared with its baseline run."""

    wall: float  # median wall seconds
    cpu: float  # median CPU seconds
    ratio: float  # median of the per-round wall ratios to the baseline
    cpu_ratio: float  # median of the per-round CPU ratios
    walls: tuple[float, ...]  # every round's wall seconds, in round order


def paired_medians(runs: Sequence[Timed], bases: Sequence[Timed]) -> Paired:
    """Medians of ``runs``; the ratios are taken round by round against ``bases``.

    ``runs[i]`` and ``bases[i]`` must come from the same round; unequal lengths raise
    ``ValueError``.
    """
    pairs = list(zip(runs, bases, strict=True))
    return Paired(
        wall=statistics.median(r.wall for r in runs),
        cpu=statistics.median(r.cpu for r in runs),
        ratio=statistics.median(r.wall / b.wall for r, b in pairs),
        cpu_ratio=statistics.median(r.cpu / b.cpu for r, b in pairs),
        walls=tuple(r.wall for r in runs),
    )


def interleaved(
    scenarios: Mapping[str, Callable[[], T]],
    rounds: int,
    after_round: Callable[[int, list[float], Mapping[str, list[T]]], None],
) -> tuple[dict[str, list[T]], list[list[float]]]:
    """Run every scenario once per round, in order, for ``rounds`` rounds.

    Returns each scenario's results in round order and, per round, the 1-minute load
    averages sampled before the first scenario and after each one (for
    :func:`machine_load.round_note`). ``after_round(index, loads, results)`` is called
    after each round, to print its line while the benchmark runs.
    """
    results: dict[str, list[T]] = {label: [] for label in scenarios}
    loads: list[list[float]] = []
    for index in range(rounds):
        samples = [load_1min()]
        for label, run in scenarios.items():
            results[label].append(run())
            samples.append(load_1min())
        loads.append(samples)
        after_round(index, samples, results)
    return results, loads
