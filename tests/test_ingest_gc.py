"""The collector settings of a serving process (cdp_tiktok.ingest.gc_tuning)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cdp_tiktok.ingest.gc_tuning import SERVING_THRESHOLDS, tune_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tuning_freezes_start_up_state_and_sets_the_thresholds() -> None:
    gc.unfreeze()
    survivor = {"built": ["at start-up"]}
    tune_for_serving()
    assert gc.get_threshold() == SERVING_THRESHOLDS
    assert gc.get_freeze_count() > 0
    # Frozen objects are out of the collector's sight: no generation lists them.
    assert all(survivor is not o for o in gc.get_objects())


@pytest.mark.usefixtures("restored_gc")
def test_cyclic_garbage_made_after_tuning_is_still_collected() -> None:
    tune_for_serving()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
