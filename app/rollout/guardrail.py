"""The failure guardrail: when a wave's permanent failures say the campaign is broken.

A rate of failures over the rows decided so far is noisy on a small wave (1 of 2 is 50 %), and
a fixed minimum count ignores a small wave altogether (5 failures of a 10-device first wave
never reach 10). The guardrail decides with a confidence bound instead: it trips once the 95 %
Wilson score lower bound of the failure rate is above the campaign's threshold, so the
evidence it needs shrinks as the failure rate grows. 5 failures of 10 trip a 5 % threshold;
1 of 10 does not; 60 of 1,000 (6 %) does not yet, 80 of 1,000 does.

Pure: counts in, a reason or None out.
"""

from __future__ import annotations

import math
from decimal import Decimal

# Two-sided 95 %.
Z = 1.959963984540054
# Fewer failures than this never trip, whatever the bound: one or two permanent failures
# among the first rows of a wave are not yet a pattern.
MIN_FAILURES = 3


def wilson_lower_bound(failures: int, trials: int, z: float = Z) -> float:
    """The lower end of the Wilson score interval for `failures` out of `trials`."""
    if trials <= 0:
        return 0.0
    if not 0 <= failures <= trials:
        raise ValueError(f"failures must be within 0..{trials}, got {failures}")
    p = failures / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, (centre - spread) / (1 + z2 / trials))


def tripped(*, failed: int, sent: int, threshold_percent: Decimal, wave_number: int) -> str | None:
    """Why the wave must pause (a sentence for the audit log), or None.

    `failed` counts permanent failures, `sent` successful sends: the rows decided so far
    (rows still queued or in flight are not evidence either way)."""
    trials = failed + sent
    if failed < MIN_FAILURES or trials == 0:
        return None
    bound = wilson_lower_bound(failed, trials)
    if bound * 100 <= float(threshold_percent):
        return None
    return (
        f"guardrail: {failed} of {trials} deliveries decided in wave {wave_number} failed "
        f"permanently ({failed * 100 / trials:.1f} %; with 95 % confidence at least "
        f"{bound * 100:.1f} %), above the {threshold_percent} % threshold"
    )


# Sends beyond which a search for `sends_that_clear` gives up: the guardrail then trips
# whatever the sends (a threshold of 0 %: any three failures are above it).
_SEARCH_LIMIT = 1 << 48


def sends_that_clear(*, failed: int, threshold_percent: Decimal) -> int | None:
    """The fewest successful sends beside `failed` failures with which `tripped` says no: a
    count of a wave's sends may stop there, since more sends only lower the bound (for a
    fixed number of failures, the Wilson lower bound does not rise with the trials). 0 when
    it says no whatever the sends; None when it says yes whatever the sends (then only the
    reason's wording needs them all).

    So the tick decides with a count of sends bounded by the failures, not by the wave: a
    wave of millions of rows is not counted whole every second."""

    def clears(sent: int) -> bool:
        return (
            tripped(failed=failed, sent=sent, threshold_percent=threshold_percent, wave_number=1)
            is None
        )

    if clears(0):
        return 0
    high = 1
    while not clears(high):
        if high >= _SEARCH_LIMIT:
            return None
        high *= 2
    low = high // 2  # trips at `low` (at 0 when high is 1)
    while high - low > 1:
        middle = (low + high) // 2
        if clears(middle):
            high = middle
        else:
            low = middle
    return high
