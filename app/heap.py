"""A long-running process's garbage collector, settled once start-up is done.

Both kinds of process free almost everything they make by reference counting: a request's
objects, a send job's batch (its messages, payloads, requests and results). What CPython's
cyclic collector adds on top is cost, not freed memory:

- every full collection walked what start-up built (modules, the ORM's tables, pydantic's
  validators, pools, clients): hundreds of thousands of objects, up to 110 ms each in an API
  process at 1,500 requests/s, every request in flight waiting (the p99 was that pause);
- at the default young threshold (700), an API process collected its youngest generation over
  a hundred times a second (some 2 % of its CPU), and a worker sending 100,000 APNs pushes
  ran 5,761 young, 523 middle and 47 full collections: 31 µs of CPU per message, some 7 %
  of the worker's, and a 19 ms stall in each full collection (the delivery benchmark,
  `docs/benchmarks.md`, 7 December, evening).
"""

from __future__ import annotations

import gc

# Collect the youngest generation after this many more container objects were made than freed
# (CPython's default is 700). The middle and oldest generations keep their ratios, so they
# too run 14 times less often.
YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Once a process has started: collect, then exempt every object alive now from later
    cyclic collections, and collect the young generation less often (YOUNG_THRESHOLD).

    Frozen, a full collection takes a few ms. Objects made later are collected as before;
    the frozen ones are still freed by reference counting, only never scanned for cycles."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
