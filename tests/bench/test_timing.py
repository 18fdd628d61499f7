"""The arithmetic the throttle and kill benchmarks apply to a fake's records."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wavecast_tools.bench.report import percentile
from wavecast_tools.bench.timing import (
    Request,
    aligned_counts,
    inside_by_source,
    inside_retry_after,
    kill_trial,
    retry_after_windows,
    sliding_max,
    steady_counts,
)

instants = st.lists(
    st.floats(min_value=0, max_value=20, allow_nan=False, allow_infinity=False), max_size=200
)


def brute_sliding_max(times: list[float], width: float) -> int:
    return max((sum(1 for u in times if t <= u < t + width) for t in times), default=0)


@given(instants)
def test_sliding_max_is_the_most_instants_in_any_window(times: list[float]) -> None:
    assert sliding_max(times) == brute_sliding_max(times, 1.0)


@given(instants)
def test_sliding_max_bounds_every_aligned_window(times: list[float]) -> None:
    assert all(count <= sliding_max(times) for count in aligned_counts(times))


def test_sliding_max_sees_a_burst_that_straddles_aligned_windows() -> None:
    times = [0.0, 0.9, 0.95, 1.05, 1.1]
    assert aligned_counts(times) == [3, 2]
    assert sliding_max(times) == 4


def test_sliding_max_windows_are_half_open() -> None:
    assert sliding_max([0.0, 1.0, 2.0]) == 1
    assert sliding_max([0.0, 0.5, 1.0]) == 2


@given(instants)
def test_aligned_counts_keep_every_instant_in_its_window(times: list[float]) -> None:
    counts = aligned_counts(times)
    assert sum(counts) == len(times)
    if times:
        first = min(times)
        assert counts == [
            sum(1 for t in times if k <= t - first < k + 1) for k in range(len(counts))
        ]


def test_steady_counts_drop_the_first_and_last_window() -> None:
    times = [0.0, 0.5, 1.0, 1.2, 1.7, 2.1, 2.2, 3.05]
    assert aligned_counts(times) == [2, 3, 2, 1]
    assert steady_counts(times) == [3, 2]
    assert steady_counts([0.0, 0.5]) == []


def test_windows_need_a_positive_width() -> None:
    with pytest.raises(ValueError, match="width"):
        sliding_max([1.0], 0)
    with pytest.raises(ValueError, match="width"):
        aligned_counts([1.0], -1)


def test_retry_after_windows_start_at_the_answer_and_merge() -> None:
    requests = [
        Request(0.0, 0.05, 429, 2),
        Request(0.01, 0.06, 429, 2),
        Request(5.0, 5.0, 429, 1),
        Request(1.0, 1.0, 200),
    ]
    assert retry_after_windows(requests) == [(0.05, 2.06), (5.0, 6.0)]


def test_requests_inside_retry_after() -> None:
    refused = Request(1.0, 1.05, 429, 2)
    on_the_wire = Request(1.02, 1.02)  # arrived before the 429 was answered
    too_soon = Request(1.5, 1.5)
    at_the_end = Request(3.05, 3.05)  # the window is open: this one honours it
    later = Request(4.0, 4.0)
    requests = [refused, on_the_wire, too_soon, at_the_end, later]
    assert inside_retry_after(requests) == [too_soon]


@given(
    st.lists(
        st.tuples(
            st.floats(0, 10, allow_nan=False),
            st.floats(0, 1, allow_nan=False),
            st.sampled_from([None, 0.0, 1.0, 2.0]),
        ),
        max_size=50,
    )
)
def test_inside_retry_after_matches_a_direct_check(
    rows: list[tuple[float, float, float | None]],
) -> None:
    requests = [Request(start, start + delay, 429 if ra else 200, ra) for start, delay, ra in rows]
    expected = [
        r
        for r in requests
        if any(o.retry_after and o.end < r.start < o.end + o.retry_after for o in requests)
    ]
    assert inside_retry_after(requests) == expected


def test_inside_requests_are_told_apart_by_who_had_been_answered() -> None:
    requests = [
        Request(1.0, 1.05, 429, 2, source=0),  # worker 0 is told to wait at 1.05
        Request(1.5, 1.5, source=0),  # worker 0 sends anyway: it had been told
        Request(1.06, 1.06, source=1),  # worker 1 was never answered 429: not told
        # Worker 1 again, not told yet (inside worker 0's window); its own 429 comes at 1.2.
        Request(1.07, 1.2, 429, 2, source=1),
        Request(1.3, 1.3, source=1),  # now worker 1 had been told
        Request(1.4, 1.4, source=None),  # a sender the benchmark could not name
        Request(4.0, 4.0, source=1),  # after every window
    ]
    split = inside_by_source(requests)
    assert (split.own, split.other, split.unknown) == (2, 2, 1)
    # Every inside request is counted once, in one of the three.
    assert split.own + split.other + split.unknown == len(inside_retry_after(requests))


def test_kill_trial_counts_late_starts_and_measures_the_lag() -> None:
    requests = [
        Request(0.0, 0.1),
        Request(0.9, 1.15),  # in flight at the answer (1.0), done 150 ms later
        Request(0.95, 1.05),
        Request(1.2, 1.3),  # started after the answer
    ]
    trial = kill_trial(requests, answered=1.0)
    assert trial.started_after == 1
    assert trial.started_before == 3
    assert trial.in_flight_at_answer == 2
    assert trial.lag == pytest.approx(0.15)
    assert trial.last_end == pytest.approx(1.15)


def test_kill_trial_lag_is_zero_when_everything_finished_before_the_answer() -> None:
    trial = kill_trial([Request(0.0, 0.1), Request(0.5, 0.6)], answered=0.8)
    assert (trial.lag, trial.in_flight_at_answer, trial.started_after) == (0.0, 0, 0)
    empty = kill_trial([], answered=1.0)
    assert (empty.lag, empty.last_end, empty.started_before) == (0.0, None, 0)


def test_nearest_rank_percentiles_of_ten_trials() -> None:
    lags = [float(i) for i in range(1, 11)]
    assert percentile(lags, 50) == 5.0
    assert percentile(lags, 99) == 10.0  # with ten trials p99 is the worst one
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
