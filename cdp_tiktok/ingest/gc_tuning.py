"""Garbage-collector settings for a process that serves the intake.

Mapping a message allocates dozens of containers, and a request's messages stay alive
until its transaction commits. With CPython's default thresholds (700, 10, 10) a young
collection runs every dozen messages and promotes the messages in flight, so the oldest
generation keeps growing and its full collections walk every long-lived object of the
process: compiled mappings, the identity store's in-memory copy (up to 50,000 rows),
modules. Measured with ``gc.callbacks`` under ``benchmarks/bench_intake.py``: about a
fifth of the intake's time went to collections.

:func:`tune_for_serving` runs once the service has started: what start-up built is moved
out of the collector's sight (``gc.freeze``: it lives as long as the process anyway) and
young collections run every :data:`SERVING_THRESHOLDS` allocations instead, so that most
in-flight messages are answered and freed by reference counting before a collection
would look at them. Cyclic garbage is still collected, only in larger steps.
"""

from __future__ import annotations

import gc

SERVING_THRESHOLDS = (10_000, 20, 20)
"""Collector thresholds (young, middle, old) while serving; CPython's default is (700, 10, 10)."""


def tune_for_serving() -> None:
    """Collect once, freeze what survives (start-up state, never collected again), and set
    :data:`SERVING_THRESHOLDS`. Process-wide: only for a process whose job is serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_THRESHOLDS)
