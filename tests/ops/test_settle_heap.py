"""A long-running process exempts what it made at start-up from cyclic collections and
collects its young generation less often (`settle_heap`)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from app.heap import YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_garbage_still_collected(restored_gc: None) -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    cycle = Node()
    settle_heap()
    assert gc.get_freeze_count() > 1000  # the modules and everything else alive now
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    del cycle  # frozen cyclic garbage is kept (the price); new garbage is not:
    later = Node()
    ref = weakref.ref(later)
    del later
    gc.collect()
    assert ref() is None
