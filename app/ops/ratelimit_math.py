"""GCRA (generic cell rate algorithm), the arithmetic of the API rate limit (pure).

A bucket keeps one number, its TAT: the instant at which it would be empty again. A request
at `now` is allowed when, after adding one interval, the TAT is at most `burst` intervals
ahead of `now`; otherwise it is refused, unchanged, with the time until it would be allowed.
`ratelimit.lua` repeats this step for step; the in-process fallback uses it directly.
"""

from __future__ import annotations

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
    if interval <= 0 or burst < 1:
        raise ValueError("interval must be > 0 and burst >= 1")
    start = max(tat, now)
    new_tat = start + interval
    allow_at = new_tat - interval * burst
    if allow_at - now > SLACK:
        return Decision(False, tat, allow_at - now)
    return Decision(True, new_tat, 0.0)


def burst_for(rate: float, multiple: float) -> int:
    """How many requests may arrive at once for a sustained `rate` per second."""
    return max(1, int(rate * multiple))
