"""A worker settles its heap once started, as an API process does (`app.heap`): what start-up
built is frozen and the young generation is collected every YOUNG_THRESHOLD allocations, not
every 700 (some 7 % of its CPU went to the collector; docs/benchmarks.md)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.heap import YOUNG_THRESHOLD
from app.runtime import Runtime
from workers.main import build_worker


@pytest.fixture
def default_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)  # CPython's own
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def test_a_started_worker_has_settled_its_heap(db: Runtime, default_gc: None) -> None:
    worker = build_worker(db.settings, burst=True, max_burst_jobs=1)
    try:
        await worker.main()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() > 1000  # the modules, the clients, the settings
    finally:
        await worker.close()
