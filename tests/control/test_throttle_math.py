"""Property tests of the throttle arithmetic: simulated workers reserving through the pure
`reserve`, exactly as the Lua script does in Redis (the two are compared in test_throttle.py).

A "send" below is a reserved batch: `n` sends leaving at its `start` instant."""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.control.throttle_math import (
    GcraState,
    RatePaused,
    ScopeSnapshot,
    batch_size_for_rate,
    block_in_force,
    effective_tat,
    extend_block,
    grant_size,
    reserve,
)

WANT_EVERYTHING = 10**9


@dataclass(frozen=True)
class Sent:
    now: float
    start: float
    n: int
    scopes: tuple[str, ...]
    blocked_until: float  # the latest block in force on its scopes when it was reserved
    epoch: int  # how many rate changes had happened when it was reserved


def simulate(
    rates: dict[str, float | None],
    worker_scopes: Sequence[tuple[str, ...]],
    latencies: Sequence[float],
    *,
    until: float,
    blocks: Sequence[tuple[float, str, float]] = (),
    rate_changes: Sequence[tuple[float, str, float | None]] = (),
) -> list[Sent]:
    """Workers loop reserve → wait → send → (latency) → reserve, until `until`.

    Redis serialises reservations in arrival order, so the simulation processes them in time
    order; blocks `(at, scope, seconds)` and rate changes `(at, scope, rate)` land between
    reservations. Latencies are used in turn, cycling."""
    rates = dict(rates)
    states: dict[str, GcraState | None] = dict.fromkeys(rates)
    blocked: dict[str, float | None] = dict.fromkeys(rates)
    events = sorted(
        [(at, "block", scope, value) for at, scope, value in blocks]
        + [(at, "rate", scope, value) for at, scope, value in rate_changes],
        key=lambda event: event[0],
    )
    epoch = 0
    arrivals = [(0.0, worker) for worker in range(len(worker_scopes))]
    heapq.heapify(arrivals)
    latency = itertools.cycle(latencies)
    sent: list[Sent] = []
    while arrivals:
        now, worker = heapq.heappop(arrivals)
        if now > until:
            continue
        while events and events[0][0] <= now:
            at, kind, scope, value = events.pop(0)
            if kind == "block":
                assert value is not None
                blocked[scope] = extend_block(blocked[scope], at, value)
            else:
                rates[scope] = value
                epoch += 1
        scopes = worker_scopes[worker]
        n = grant_size(WANT_EVERYTHING, (rates[s] for s in scopes))
        snapshot = {s: ScopeSnapshot(rates[s], states[s], blocked[s]) for s in scopes}
        reservation = reserve(snapshot, now, n)
        states.update(reservation.states)
        in_force = max((blocked[s] or -math.inf for s in scopes), default=-math.inf)
        sent.append(Sent(now, reservation.start, n, scopes, in_force, epoch))
        assert reservation.wait == reservation.start - now
        heapq.heappush(arrivals, (reservation.start + next(latency), worker))
    return sent


def window_counts(points: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    """For every send instant t in `points` ((instant, count) pairs): the sends in the half-open
    window [t, t + 1). The busiest window of any position begins at some send (slide it right
    until one enters at its left edge), so these cover every 1-second window."""
    ordered = sorted(points)
    instants = [t for t, _ in ordered]
    prefix = [0, *itertools.accumulate(n for _, n in ordered)]
    return [
        (t, prefix[bisect.bisect_left(instants, t + 1.0)] - prefix[i])
        for i, t in enumerate(instants)
    ]


def busiest_window(points: Sequence[tuple[float, int]]) -> int:
    return max((count for _, count in window_counts(points)), default=0)


def starts(sent: Sequence[Sent]) -> list[tuple[float, int]]:
    return [(item.start, item.n) for item in sent]


rates_any = st.floats(min_value=0.5, max_value=5000.0)
rates_fine = st.floats(min_value=20.0, max_value=5000.0)  # where one send is <= 5 % of a second
latency_lists = st.lists(st.floats(min_value=0.0, max_value=1.5), min_size=1, max_size=20)


# Start times are doubles, and over a second of reservations their rounding (under 1e-11 s at
# these rates and instants) can fit a hair more than R sends before a window's last batch:
# with R = 4999.999999999999 a window held 5,000 + 199. The bound holds to this part of R.
ROUNDING = 1e-9


def fidelity_bound(rate: float, batch: int) -> float:
    """The most sends any 1-second window holds: fewer than R + B exactly, R + B to rounding."""
    return rate * (1 + ROUNDING) + batch


def assert_fidelity(sent: Sequence[Sent], rate: float) -> None:
    """The documented bound: any 1-second window holds at most R + B sends, and for R >= 20/s
    that is at most 105 % of R."""
    batch = batch_size_for_rate(rate)
    assert all(item.n <= batch for item in sent)
    busiest = busiest_window(starts(sent))
    assert busiest <= fidelity_bound(rate, batch)
    if rate >= 20.0:
        assert busiest <= 1.05 * rate


# --- batch size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(None, 500), (0.0, 1), (0.5, 1), (10.0, 1), (24.9, 1), (25.0, 1), (50.0, 2), (500.0, 20)],
)
def test_batch_size_examples(rate: float | None, expected: int) -> None:
    assert batch_size_for_rate(rate) == expected


def test_batch_size_is_capped_by_max_batch() -> None:
    assert batch_size_for_rate(10_000.0) == 400
    assert batch_size_for_rate(100_000.0) == 500
    assert batch_size_for_rate(100_000.0, max_batch=50) == 50


@pytest.mark.parametrize("rate", [-1.0, math.nan, math.inf])
def test_batch_size_rejects_nonsense_rates(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        batch_size_for_rate(rate)


@given(rate=st.floats(min_value=0.0, max_value=1e7))
def test_batch_is_at_most_four_percent_of_a_second_or_one_send(rate: float) -> None:
    batch = batch_size_for_rate(rate)
    assert 1 <= batch <= 500
    assert batch == 1 or batch <= 0.04 * rate


def test_grant_size_follows_the_tightest_limited_rate() -> None:
    assert grant_size(1000, [None, 500.0, 10_000.0]) == 20
    assert grant_size(7, [500.0]) == 7
    assert grant_size(1000, [None, None]) == 500


# --- single reservations ---------------------------------------------------------------------


def test_reservations_queue_behind_each_other() -> None:
    first = reserve({"c": ScopeSnapshot(100.0)}, now=10.0, n=4)
    assert (first.start, first.wait) == (10.0, 0.0)
    assert first.states["c"] == GcraState(tat=10.04, rate=100.0)
    second = reserve({"c": ScopeSnapshot(100.0, first.states["c"])}, now=10.01, n=4)
    assert second.start == 10.04
    assert second.wait == pytest.approx(0.03)


def test_an_old_tat_does_not_hold_back_a_new_reservation() -> None:
    result = reserve({"c": ScopeSnapshot(100.0, GcraState(5.0, 100.0))}, now=10.0, n=4)
    assert result.start == 10.0


def test_paused_scope_refuses_and_names_itself() -> None:
    scopes = {"c": ScopeSnapshot(0.0), "p": ScopeSnapshot(100.0)}
    with pytest.raises(RatePaused) as caught:
        reserve(scopes, now=1.0, n=1)
    assert caught.value.scopes == ("c",)


def test_unlimited_scope_never_waits_and_keeps_no_state() -> None:
    result = reserve({"p": ScopeSnapshot(None)}, now=3.0, n=500)
    assert result.wait == 0.0
    assert dict(result.states) == {}


def test_block_applies_even_to_an_unlimited_scope() -> None:
    result = reserve({"p": ScopeSnapshot(None, blocked_until=7.5)}, now=3.0, n=1)
    assert result.start == 7.5


def test_scopes_share_one_start() -> None:
    campaign = ScopeSnapshot(10.0, GcraState(tat=2.0, rate=10.0))
    provider = ScopeSnapshot(1000.0, GcraState(tat=1.0, rate=1000.0))
    result = reserve({"c": campaign, "p": provider}, now=1.0, n=1)
    assert result.start == 2.0
    assert result.states == {"c": GcraState(2.1, 10.0), "p": GcraState(2.001, 1000.0)}


def test_steady_backlog_is_never_capped() -> None:
    # Five workers queued at 1/s: the fifth legitimately starts 4 s from now.
    assert effective_tat(GcraState(tat=14.0, rate=1.0), rate=1.0, now=10.0, n=1) == 14.0


def test_raise_caps_an_old_backlog_at_one_second() -> None:
    assert effective_tat(GcraState(tat=60.0, rate=1.0), rate=100.0, now=10.0, n=4) == 11.0


def test_raise_to_a_slow_rate_caps_at_one_new_interval() -> None:
    assert effective_tat(GcraState(tat=30.0, rate=0.1), rate=0.2, now=10.0, n=1) == 15.0


def test_lowering_keeps_the_tat() -> None:
    assert effective_tat(GcraState(tat=10.5, rate=500.0), rate=50.0, now=10.0, n=2) == 10.5


def test_a_shorter_block_never_shortens_a_longer_one() -> None:
    assert extend_block(None, now=1.0, seconds=5.0) == 6.0
    assert extend_block(6.0, now=2.0, seconds=1.0) == 6.0
    assert extend_block(6.0, now=2.0, seconds=10.0) == 12.0


# --- properties over many simulated workers --------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    rate=rates_any,
    workers=st.integers(min_value=1, max_value=8),
    latencies=latency_lists,
    blocks=st.lists(st.tuples(st.floats(0.0, 6.0), st.just("c"), st.floats(0.0, 2.0)), max_size=4),
)
def test_no_window_exceeds_the_bound_and_nothing_starts_inside_a_block(
    rate: float,
    workers: int,
    latencies: list[float],
    blocks: list[tuple[float, str, float]],
) -> None:
    sent = simulate({"c": rate}, [("c",)] * workers, latencies, until=6.0, blocks=blocks)
    assert_fidelity(sent, rate)
    assert all(item.start >= item.blocked_until for item in sent)
    instants = [item.start for item in sent]
    assert instants == sorted(instants)


@settings(max_examples=200, deadline=None)
@given(
    rate=rates_fine,
    workers=st.integers(min_value=1, max_value=6),
    fractions=st.lists(st.floats(min_value=0.0, max_value=0.99), min_size=1, max_size=20),
)
def test_backlogged_workers_get_the_whole_rate(
    rate: float, workers: int, fractions: list[float]
) -> None:
    # Demand exceeds supply: every worker is back before W batches' time from its own start,
    # so (W reservations spaced >= B/R apart) the next arrival always finds tat ahead of now.
    cycle = workers * batch_size_for_rate(rate) / rate
    sent = simulate({"c": rate}, [("c",)] * workers, [f * cycle for f in fractions], until=9.0)
    assert_fidelity(sent, rate)
    # Work-conserving: each reservation starts exactly where the previous one left the tat.
    assert all(b.start == a.start + a.n / rate for a, b in itertools.pairwise(sent))
    first = sent[0].start
    seconds = 8
    in_span = sum(item.n for item in sent if first <= item.start < first + seconds)
    assert in_span / seconds >= 0.95 * rate
    batch = batch_size_for_rate(rate)
    full_windows = [count for s, count in window_counts(starts(sent)) if s + 1.0 <= first + seconds]
    assert min(full_windows) >= rate - batch


@settings(max_examples=200, deadline=None)
@given(
    campaign_rates=st.lists(rates_fine, min_size=1, max_size=3),
    provider_rate=st.one_of(st.none(), rates_fine),
    workers_each=st.integers(min_value=1, max_value=3),
    latencies=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=20),
    provider_blocks=st.lists(
        st.tuples(st.floats(0.0, 4.0), st.just("provider"), st.floats(0.0, 1.0)), max_size=3
    ),
)
# Found by a search: the provider at the largest rate below 5000 (a bound hypothesis draws)
# took batches of 199, 50 and 1 that add up to 5,000 within a second of rounded starts.
@example(
    campaign_rates=[5000.0, 1250.0, 25.0],
    provider_rate=4999.999999999999,
    workers_each=1,
    latencies=[0.0],
    provider_blocks=[],
)
def test_campaign_rates_and_provider_cap_hold_together(
    campaign_rates: list[float],
    provider_rate: float | None,
    workers_each: int,
    latencies: list[float],
    provider_blocks: list[tuple[float, str, float]],
) -> None:
    rates: dict[str, float | None] = {f"c{i}": r for i, r in enumerate(campaign_rates)}
    rates["provider"] = provider_rate
    worker_scopes = [
        (f"c{i}", "provider") for i in range(len(campaign_rates)) for _ in range(workers_each)
    ]
    sent = simulate(rates, worker_scopes, latencies, until=4.0, blocks=provider_blocks)
    for i, rate in enumerate(campaign_rates):
        assert_fidelity([item for item in sent if f"c{i}" in item.scopes], rate)
    if provider_rate is not None:
        assert_fidelity(sent, provider_rate)
    assert all(item.start >= item.blocked_until for item in sent)


@settings(max_examples=300, deadline=None)
@given(
    before=rates_any,
    after=rates_any,
    workers=st.integers(min_value=1, max_value=40),
    latencies=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=20),
    change_at=st.floats(0.5, 3.0),
)
def test_rate_change_applies_to_the_next_reservation(
    before: float, after: float, workers: int, latencies: list[float], change_at: float
) -> None:
    sent = simulate(
        {"c": before},
        [("c",)] * workers,
        latencies,
        until=change_at + 4.0,
        rate_changes=[(change_at, "c", after)],
    )
    old = [item for item in sent if item.epoch == 0]
    new = [item for item in sent if item.epoch == 1]
    if not old or not new:
        return
    assert all(item.n <= batch_size_for_rate(after) for item in new)
    last_old = max(item.start for item in old)
    # Once the sends reserved at the old rate are out, windows hold only the new rate.
    new_windows = [count for s, count in window_counts(starts(new)) if s > last_old]
    assert max(new_windows, default=0) <= fidelity_bound(after, batch_size_for_rate(after))
    first = new[0]
    if after > before:
        # A raise never leaves the next reservation behind an old backlog for more than ~1 s.
        assert first.start - first.now <= max(1.0, first.n / after) + 1e-6
    else:
        # A cut never lets a new reservation jump ahead of ones already granted.
        assert first.start >= last_old


@given(
    st.lists(st.one_of(st.none(), st.floats(0, 100, allow_nan=False)), min_size=1, max_size=4),
    st.floats(0, 100, allow_nan=False),
)
def test_block_in_force_is_the_latest_block_not_yet_over(
    blocks: list[float | None], now: float
) -> None:
    scopes = {f"s{i}": ScopeSnapshot(rate=10.0, blocked_until=b) for i, b in enumerate(blocks)}
    found = block_in_force(scopes, now)
    in_force = [b for b in blocks if b is not None and b > now]
    if not in_force:
        assert found is None
    else:
        assert found == max(in_force)
        assert all(b is None or b <= found for b in blocks)
