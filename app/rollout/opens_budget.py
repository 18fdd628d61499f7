"""The opens budget: predict a campaign's push-driven opens and pace its sends under a budget.

Pure, no I/O; `app.rollout.opens_control` feeds it from the database once a second.

Model. One send is opened ``d`` to ``d + 1`` seconds after it with probability ``kernel[d]``
(the open rate spread over the delay from send to open; ``sum(kernel)`` is the open rate).
Sends ``s(t)`` per second then cause ``opens(t) = sum over a of s(t - a) * kernel[a]`` opens
per second. A campaign declares ``throttle.max_opens_per_second``, the most push-driven opens
per second its backend can take; each second the controller picks the most sends it can make
in the next second so that, added to the opens its earlier sends will still cause, no future
second is predicted over the budget (`allowed_sends`). It fills the budget greedily: the
delay lets it send fast before the first opens arrive, and once the budget is full it sends
as fast as opens leave it, ``budget / open rate`` on average.

Where the kernel comes from (`estimate`):

- Before the campaign has data, the deployment's prior (`prior_model`): an open rate and a
  log-normal delay chosen to predict more opens, sooner, than real campaigns cause, so the
  first wave is paced too slowly rather than too fast (the values and the reasons are in
  ``Settings``).
- Once opens are reported, from the campaign's own sends and opens: ``kernel[d]`` is the
  opens seen ``d`` seconds after their send over the sends observed for longer than ``d + 1``
  seconds (a send too recent to have been observed that long says nothing about that delay
  yet), each bin shrunk towards the prior by `PRIOR_WEIGHT` sends of pseudo-data. Delays no
  send has been observed for yet are extrapolated from the last observed ones (their decay,
  continued geometrically; never below the prior).
- A kernel that has so far predicted fewer opens than were reported is scaled up to what was
  reported (`feedback_scale`); never down, so a slow reporter never speeds sends up.

The oracle of ``wavecast bench opens`` is this same controller given the simulated
population's exact kernel (`lognormal_kernel`) and no headroom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# The kernel's length in seconds; opens later than this are left out of every prediction
# (for a log-normal delay of median 20 s and sigma 1 they are 0.3 % of the opens).
HORIZON_SECONDS = 300
# Each bin of an estimated kernel starts from this many sends' worth of the prior.
PRIOR_WEIGHT = 20
# A delay bin is estimated from the data once this many sends have been observed past it.
MIN_EXPOSURE = 50
# Below this many reported opens the campaign's own data is too thin: the prior stands.
MIN_OPENS = 20
# The controller aims this far under the budget: a 10-second window of Poisson opens near
# 300/s varies by about 2 %, and the kernel is an estimate.
HEADROOM = 0.95
# The room the budget leaves is spent over this many seconds, not in the next one: the rate
# holds until the next tick, and a tick that comes up to two seconds late must not have let
# three seconds of the room go out at once. It also smooths the rate (no 2,000/s then 1/s).
SPREAD_SECONDS = 3.0
# The slowest a budget ever paces a campaign: a rate of 0 would read as a pause to every
# worker, and one send a second cannot break any budget.
MIN_RATE = 1.0
# The feedback compares predicted and reported opens over this window, ending this long ago
# (reports reach Wavecast a moment after the tap).
FEEDBACK_WINDOW_SECONDS = 10
FEEDBACK_LAG_SECONDS = 2
# Too few predicted opens to compare (noise), and the most the feedback may scale a kernel.
FEEDBACK_MIN_PREDICTED = 30.0
FEEDBACK_MAX_SCALE = 3.0
# Geometric tail: never a slower decay than this per second (a sum that stays finite).
TAIL_MAX_DECAY = 0.99


@dataclass(frozen=True, slots=True)
class Prior:
    """A deployment's assumption about opens before a campaign has any: ``open_rate`` of the
    sends are opened, after a log-normal delay of median ``median_delay_seconds``."""

    open_rate: float
    median_delay_seconds: float
    sigma: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.open_rate <= 1.0:
            raise ValueError(f"open_rate must be in (0, 1], got {self.open_rate}")
        if not 0.0 < self.median_delay_seconds < math.inf:
            raise ValueError(f"median delay must be > 0 s, got {self.median_delay_seconds}")
        if not 0.0 < self.sigma < math.inf:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")


@dataclass(frozen=True, slots=True)
class OpensModel:
    kernel: tuple[float, ...]
    """``kernel[d]``: the probability that one send is opened d to d + 1 seconds after it."""
    source: Literal["prior", "events"]
    sends: int = 0
    """Sends the estimate rests on (0 for the prior)."""
    opens: int = 0
    """Opens reported for them."""

    @property
    def open_rate(self) -> float:
        return math.fsum(self.kernel)

    @property
    def median_delay(self) -> int:
        """The first second by which half of the predicted opens have happened."""
        half = self.open_rate / 2
        total = 0.0
        for d, k in enumerate(self.kernel):
            total += k
            if total >= half:
                return d + 1
        return len(self.kernel)


@dataclass(frozen=True, slots=True)
class Decision:
    per_second: float
    """The effective send rate for the next second."""
    reason: str
    limited: bool
    """True when the budget, not ``throttle.per_second``, sets the rate."""


def lognormal_kernel(
    open_rate: float, median_seconds: float, sigma: float, horizon: int = HORIZON_SECONDS
) -> tuple[float, ...]:
    """The kernel of a population that opens with probability ``open_rate`` after a
    log-normal delay (median ``median_seconds``, shape ``sigma``)."""
    mu = math.log(median_seconds)

    def cdf(t: float) -> float:
        if t <= 0.0:
            return 0.0
        return 0.5 * (1.0 + math.erf((math.log(t) - mu) / (sigma * math.sqrt(2.0))))

    return tuple(open_rate * (cdf(d + 1) - cdf(d)) for d in range(horizon))


def prior_model(prior: Prior, horizon: int = HORIZON_SECONDS) -> OpensModel:
    kernel = lognormal_kernel(prior.open_rate, prior.median_delay_seconds, prior.sigma, horizon)
    return OpensModel(kernel=kernel, source="prior")


def estimate(
    sends_by_age: Sequence[int],
    opens_by_delay: Sequence[int],
    prior: OpensModel,
    *,
    prior_weight: float = PRIOR_WEIGHT,
    min_exposure: int = MIN_EXPOSURE,
    min_opens: int = MIN_OPENS,
) -> OpensModel:
    """The kernel from a campaign's own data.

    ``sends_by_age[a]``: sends made ``a`` to ``a + 1`` seconds ago; the last bin holds every
    older send. ``opens_by_delay[d]``: opens reported ``d`` to ``d + 1`` seconds after their
    send; the last bin holds every later one. Either may be shorter than the prior's kernel.
    """
    horizon = len(prior.kernel)
    total_sends = sum(sends_by_age)
    total_opens = sum(opens_by_delay)
    if total_opens < min_opens or total_sends <= 0:
        return prior
    # exposure[d]: sends observed for at least d + 1 seconds, i.e. whose bin d is complete.
    exposure = [0] * horizon
    running = 0
    for a in range(len(sends_by_age) - 1, 0, -1):
        running += sends_by_age[a]
        if a - 1 < horizon:
            exposure[a - 1] = running
    observed = 0
    while observed < horizon and exposure[observed] >= min_exposure:
        observed += 1
    kernel = list(prior.kernel)
    for d in range(observed):
        seen = opens_by_delay[d] if d < len(opens_by_delay) else 0
        kernel[d] = (seen + prior_weight * prior.kernel[d]) / (exposure[d] + prior_weight)
    for d, value in enumerate(_tail(kernel[:observed], horizon), start=observed):
        kernel[d] = max(kernel[d], value)
    return OpensModel(tuple(kernel), "events", sends=total_sends, opens=total_opens)


def _tail(observed: Sequence[float], horizon: int) -> list[float]:
    """The bins past the observed ones: the decay of the last observed stretch, continued.

    Two stretches of ``q`` bins at the end of what was observed give a mean rate each; their
    ratio, per bin, is the decay. A rate that is still rising decays at TAIL_MAX_DECAY. Fewer
    than 8 observed bins extrapolate nothing (the prior stands for the rest)."""
    n = len(observed)
    if n < 8:
        return []
    q = max(2, n // 4)
    earlier = math.fsum(observed[n - 2 * q : n - q]) / q
    later = math.fsum(observed[n - q :]) / q
    if later <= 0.0:
        return []
    decay = TAIL_MAX_DECAY if earlier <= later else (later / earlier) ** (1.0 / q)
    decay = min(decay, TAIL_MAX_DECAY)
    return [later * decay ** (i + 1) for i in range(horizon - n)]


def committed_opens(sends_by_age: Sequence[int], kernel: Sequence[float]) -> list[float]:
    """``result[j]``: the opens predicted ``j`` to ``j + 1`` seconds from now (``j`` from 0 to
    the kernel's length - 1) from the sends already made."""
    horizon = len(kernel)
    future = [0.0] * horizon
    for a, n in enumerate(sends_by_age):
        if n <= 0:
            continue
        for j in range(max(0, horizon - a)):
            future[j] += n * kernel[a + j]
    return future


def allowed_sends(committed: Sequence[float], kernel: Sequence[float], budget: float) -> float:
    """The most sends in the next second that keep every future second's predicted opens
    at or under ``budget``: they open ``d`` seconds into the future (``d >= 1``) with
    probability ``kernel[d - 1]``, on top of ``committed[d]``. 0 when a second is already
    full; infinite when the kernel predicts no opens at all."""
    best = math.inf
    # Up to the kernel's last second: nothing committed reaches that far (0.0 past `committed`).
    for d in range(1, len(kernel) + 1):
        k = kernel[d - 1]
        if k > 0.0:
            room = budget - (committed[d] if d < len(committed) else 0.0)
            if room <= 0.0:
                return 0.0
            best = min(best, room / k)
    return best


def predicted_past(sends_by_age: Sequence[int], kernel: Sequence[float], ages: range) -> float:
    """Opens the kernel predicts, from the sends made, in the seconds ``ages`` ago."""
    total = 0.0
    for c in ages:
        for b in range(c, len(sends_by_age)):
            d = b - c
            if d >= len(kernel):
                break
            total += sends_by_age[b] * kernel[d]
    return total


def feedback_scale(
    sends_by_age: Sequence[int],
    opens_by_age: Sequence[int],
    kernel: Sequence[float],
    *,
    window: int = FEEDBACK_WINDOW_SECONDS,
    lag: int = FEEDBACK_LAG_SECONDS,
) -> float:
    """How much more often the campaign's sends were opened lately than the kernel predicts:
    reported / predicted opens over ``window`` seconds ending ``lag`` seconds ago, at least
    1, at most FEEDBACK_MAX_SCALE; 1 when too few opens were predicted to compare."""
    ages = range(lag, lag + window)
    predicted = predicted_past(sends_by_age, kernel, ages)
    if predicted < FEEDBACK_MIN_PREDICTED:
        return 1.0
    seen = sum(opens_by_age[c] for c in ages if c < len(opens_by_age))
    return max(1.0, min(FEEDBACK_MAX_SCALE, seen / predicted))


def decide(
    model: OpensModel,
    sends_by_age: Sequence[int],
    *,
    budget: float,
    per_second: float,
    scale: float = 1.0,
    headroom: float = HEADROOM,
) -> Decision:
    """The effective send rate for the next second, and why."""
    if not budget > 0.0 or not per_second > 0.0:
        raise ValueError(f"budget and per_second must be > 0, got {budget}, {per_second}")
    if not 1.0 <= scale < math.inf:
        raise ValueError(f"scale must be >= 1, got {scale}")
    kernel = [k * scale for k in model.kernel]
    target = budget * headroom
    room = allowed_sends(committed_opens(sends_by_age, kernel), kernel, target) / SPREAD_SECONDS
    if room >= per_second:
        return Decision(
            per_second,
            f"throttle.per_second {per_second:,.0f}/s: the opens predicted stay under the "
            f"budget of {budget:,.0f}/s",
            limited=False,
        )
    rate = max(MIN_RATE, room)
    return Decision(rate, f"opens budget {budget:,.0f}/s: {_basis(model, scale)}", limited=True)


def _basis(model: OpensModel, scale: float) -> str:
    shape = f"open rate {model.open_rate * scale:.1%}, median {model.median_delay} s after the send"
    if model.source == "prior":
        return (
            f"predicted from the deployment's prior ({shape}) until {MIN_OPENS} opens are reported"
        )
    text = (
        f"predicted from this campaign's events ({model.sends:,} sends, {model.opens:,} opens; "
        f"{shape})"
    )
    if scale > 1.0:
        text += (
            f", scaled x{scale:.2f} to the opens reported in the last {FEEDBACK_WINDOW_SECONDS} s"
        )
    return text
