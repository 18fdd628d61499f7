"""Throttle arithmetic shared by every worker: a multi-scope GCRA with batches.

Pure, no I/O. ``throttle.lua`` performs exactly these operations, in the same order and in
IEEE doubles, inside one Redis EVALSHA; ``tests/control/test_throttle.py`` checks that the
two agree bit for bit, and ``tests/control/test_throttle_math.py`` property-tests the
guarantees below on this module.

Model. Every limited scope (a campaign's rate, a provider's global cap) keeps a *theoretical
arrival time* ``tat``: the earliest instant its next reservation may start. A reservation of
``n`` sends over several scopes starts at ``start = max(now, tat_i, blocked_until_i)`` over all
scopes, and moves each limited scope to ``tat_i = start + n / rate_i``. The caller waits
``start - now`` and then sends the ``n`` at once. All instants are Redis server time.

Fidelity bound (what the 105 % in SPEC §5 rests on). Starts on one scope never decrease, and
two reservations on it start at least ``n / R`` apart, where ``n`` is the earlier one's size.
So if the starts ``s_j <= ... <= s_k`` fall in a half-open window ``[t, t + 1)``, then
``n_j + ... + n_(k-1) <= R * (s_k - s_j) < R``, and the window holds
``n_j + ... + n_k < R + n_k <= R + B`` sends, B being the largest batch. (In exact arithmetic
the inequality is strict; rounding of the stored start times can carry it a hair past
``R + B``: under a billionth of R at the rates and instants the throttle sees.)
``batch_size_for_rate`` keeps B <= 4 % of R, so a window holds <= 1.04 R for R >= 25/s, and
<= 1.05 R down to R = 20/s, where B is a single send. Below 20/s a single send is already more
than 5 % of a second's budget and no schedule of whole sends can promise 105 %; the bound is
then ``ceil(R)`` (plus float noise, one send). The remaining 1 % is headroom for send-time
jitter: if batches leave up to ``d`` seconds after their reserved start, a window can also hold
sends reserved for the next ``d`` seconds, i.e. ``< R (1 + d) + B``; 10 ms of jitter fits.

Throughput. When every reservation arrives before the scope's ``tat`` (demand exceeds supply),
each starts exactly at the previous ``tat``: no capacity is lost, a full window holds at least
``R - B`` sends and the long-run mean is R.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_MAX_BATCH = 500
DEFAULT_WINDOW_FRACTION = 0.04

# After a rate is raised, a tat built at the old, slower rate may lie far ahead (many small
# rates' worth of sends already reserved). Without a cap the faster rate would only begin once
# that backlog drained, which can be minutes at low rates; SPEC §2 wants a change to take effect
# within a second. See `effective_tat` for the trade-off.
RAISE_CATCH_UP_SECONDS = 1.0


class RatePaused(Exception):
    """A scope's rate is 0: nothing may be sent on it, and nothing was reserved on any scope."""

    def __init__(self, scopes: Iterable[str]) -> None:
        self.scopes = tuple(scopes)
        super().__init__(f"throttle paused (rate 0) for {', '.join(self.scopes)}")


@dataclass(frozen=True, slots=True)
class GcraState:
    """What a limited scope remembers between reservations (Redis: the ``:tat`` hash)."""

    tat: float
    """Earliest server-clock instant at which the scope's next reservation may start."""
    rate: float
    """The rate ``tat`` was last advanced at; a higher current rate means it was raised since."""


@dataclass(frozen=True, slots=True)
class ScopeSnapshot:
    """One scope as a reservation sees it: its rate, its GCRA state, its 429 block."""

    rate: float | None
    """Sends per second; None = unlimited (never constrains), 0 = paused (refuses)."""
    state: GcraState | None = None
    """None when the scope has no reservation still ahead of it (an absent or expired key)."""
    blocked_until: float | None = None
    """Server-clock instant before which nothing on this scope may start (provider Retry-After)."""


@dataclass(frozen=True, slots=True)
class Reservation:
    n: int
    start: float
    wait: float
    """``start - now``: how long the caller sleeps before sending."""
    states: Mapping[str, GcraState]
    """New state of every limited scope; unlimited scopes are left as they were."""


def batch_size_for_rate(
    per_second: float | None,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    window_fraction: float = DEFAULT_WINDOW_FRACTION,
) -> int:
    """How many sends one reservation may take at ``per_second``.

    A batch goes out in one instant, so it is the overshoot any 1-second window can carry on top
    of the rate (module docstring: a window holds < R + B). ``window_fraction`` = 4 % keeps that
    under the 5 % SPEC §5 allows with 1 % left for send-time jitter. At least 1 (a send is
    indivisible); ``max_batch`` when unlimited (None) or when the fraction would exceed it.
    A paused rate (0) also gives 1, so callers never have to special-case a division.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if not 0.0 < window_fraction <= 1.0:
        raise ValueError(f"window_fraction must be in (0, 1], got {window_fraction}")
    if per_second is None:
        return max_batch
    _check_rate(per_second)
    # The Lua script repeats this expression verbatim; keep the two in step.
    return max(1, min(max_batch, math.floor(per_second * window_fraction)))


def tightest_rate(rates: Iterable[float | None]) -> float | None:
    """The smallest limiting rate, None when no scope limits (all unlimited)."""
    limited = [rate for rate in rates if rate is not None]
    return min(limited) if limited else None


def grant_size(
    want: int,
    rates: Iterable[float | None],
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    window_fraction: float = DEFAULT_WINDOW_FRACTION,
) -> int:
    """Sends a batched reservation takes: ``want``, but never more than one batch of the
    tightest scope. Sized at reservation time, so a rate change resizes the very next batch."""
    _check_n(want)
    batch = batch_size_for_rate(
        tightest_rate(rates), max_batch=max_batch, window_fraction=window_fraction
    )
    return min(want, batch)


def effective_tat(state: GcraState, rate: float, now: float, n: int) -> float:
    """The tat a reservation of ``n`` at ``rate`` must respect.

    Unchanged unless the rate was raised since ``state`` was built. Then it is capped at
    ``now + max(1 s, n / rate)``:

    - Capping always would be wrong: at a steady low rate many waiting workers legitimately
      build a backlog longer than a second, and cutting it would let them all send at once.
    - The backlog beyond the cap was reserved at the old rate and still goes out, at the old
      rate, next to the new reservations; for that stretch a window can hold up to about
      ``R_new + R_old``. It only exists when more than a second of sends was reserved ahead,
      which at >= 25/s needs more than 25 reservations in flight on one scope.
    - The cap is never shorter than this reservation at the new rate, so below 1 send/s a raise
      never puts the next send closer than one new interval to a send going out now.

    A lowered rate needs no cap: the old tat is nearer than the new rate would have put it, and
    reservations already granted finish within that (sub-second) backlog.
    """
    if rate > state.rate:
        return min(state.tat, now + max(RAISE_CATCH_UP_SECONDS, n / rate))
    return state.tat


def reserve(scopes: Mapping[str, ScopeSnapshot], now: float, n: int) -> Reservation:
    """Reserve ``n`` sends on every scope at once; raises RatePaused if any scope is at 0.

    The scopes share one start because the sends are one batch on every scope: a send counted
    against the campaign at ``start`` is also on the provider's wire at ``start``. The price is
    that a scope held back by another one (a busy campaign behind an idle provider cap) keeps
    the provider's capacity before ``start`` unused; GCRA remembers one instant, not gaps.
    """
    _check_n(n)
    if not scopes:
        raise ValueError("reserve needs at least one scope")
    paused = [name for name, scope in scopes.items() if scope.rate == 0]
    if paused:
        raise RatePaused(paused)

    start = now
    for scope in scopes.values():
        if scope.blocked_until is not None:
            start = max(start, scope.blocked_until)
        if scope.rate is not None and scope.state is not None:
            start = max(start, effective_tat(scope.state, scope.rate, now, n))

    states = {
        name: GcraState(tat=start + n / scope.rate, rate=scope.rate)
        for name, scope in scopes.items()
        if scope.rate is not None
    }
    return Reservation(n=n, start=start, wait=start - now, states=states)


def block_in_force(scopes: Mapping[str, ScopeSnapshot], now: float) -> float | None:
    """The end of the latest block still in force on any of ``scopes`` at ``now``; None when
    no scope is blocked.

    A batched reservation takes nothing while a block is in force: the caller waits until
    this instant and asks again. Reserving ahead instead would fix the batch's start at the
    block's end as it stands; a later, longer Retry-After (another worker's 429, written with
    ``extend_block``) could then no longer hold that batch back, and it would reach the
    provider inside the window the provider asked for.
    """
    ends = [
        scope.blocked_until
        for scope in scopes.values()
        if scope.blocked_until is not None and scope.blocked_until > now
    ]
    return max(ends) if ends else None


def extend_block(blocked_until: float | None, now: float, seconds: float) -> float:
    """A new Retry-After only ever lengthens a block: a later, shorter 429 must not let sends
    resume while an earlier, longer one is still in force."""
    if not seconds >= 0.0 or math.isinf(seconds):
        raise ValueError(f"block seconds must be finite and >= 0, got {seconds}")
    until = now + seconds
    return until if blocked_until is None else max(blocked_until, until)


def _check_rate(per_second: float) -> None:
    if not per_second >= 0.0 or math.isinf(per_second):
        raise ValueError(f"rate must be a finite number >= 0 or None, got {per_second}")


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"a reservation needs n >= 1, got {n}")
