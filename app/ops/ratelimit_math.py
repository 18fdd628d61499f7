"""GCRA (generic cell rate algorithm), the arithmetic of the API rate limit (pure).

A bucket keeps one number, its TAT: the instant at which it would be empty again. A request
at `now` is allowed when, after adding one interval, the TAT is at most `burst` intervals
ahead of `now`; otherwise it is refused, unchanged, with the time until it would be allowed.
`ratelimit.lua` repeats `take` step for step; the in-process fallback uses `gcra` directly.

`take` asks for several requests' worth at once (an API process's lease, `app.ops.ratelimit`):
it grants as many as fit, at least one or none, and moves the TAT on by one interval for each
granted, exactly as that many single requests arriving at `now` would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Float rounding in `tat + interval - interval * burst` must not refuse the burst-th request
# by a few femtoseconds; a microsecond is far below any rate this limits.
SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    tat: float
    """The bucket's TAT after the decision (unchanged when refused)."""
    retry_after: float
    """Seconds until a refused request would be allowed; 0 when allowed."""


def gcra(tat: float, now: float, interval: float, burst: int) -> Decision:
    granted, new_tat, retry_after = take(tat, now, interval, burst, 1)
    return Decision(granted == 1, new_tat, retry_after)


def take(
    tat: float, now: float, interval: float, burst: int, wanted: int
) -> tuple[int, float, float]:
    """(granted, TAT after, retry_after): up to `wanted` requests at `now`. Granting n is
    the same as n single requests at `now` (each allowed while `start + k * interval -
    interval * burst` is not after `now`); none granted leaves the TAT unchanged and says when
    one would be."""
    if interval <= 0 or burst < 1:
        raise ValueError("interval must be > 0 and burst >= 1")
    if wanted < 1:
        raise ValueError("wanted must be >= 1")
    start = max(tat, now)
    fit = math.floor((now + interval * burst - start + SLACK) / interval)
    granted = min(wanted, fit)
    if granted < 1:
        return 0, tat, start + interval - interval * burst - now
    return granted, start + granted * interval, 0.0


def burst_for(rate: float, multiple: float) -> int:
    """How many requests may arrive at once for a sustained `rate` per second."""
    return max(1, int(rate * multiple))
