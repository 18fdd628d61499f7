"""The opens budget's pure model and controller, against brute-force references and, closed
loop, against the expected opens of a known population."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.rollout import opens_budget as ob
from app.rollout.opens_control import by_age, by_delay

kernels = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=0.05)), min_size=1, max_size=40
)
sends = st.lists(st.integers(min_value=0, max_value=3_000), min_size=1, max_size=60)


def _convolve(sends_by_age: list[int], kernel: list[float]) -> list[float]:
    """The committed opens, one future second at a time, straight from the definition."""
    out = []
    for j in range(len(kernel)):
        total = 0.0
        for a, n in enumerate(sends_by_age):
            if a + j < len(kernel):
                total += n * kernel[a + j]
        out.append(total)
    return out


@given(sends, kernels)
def test_committed_opens_is_the_convolution(sends_by_age: list[int], kernel: list[float]) -> None:
    got = ob.committed_opens(sends_by_age, kernel)
    assert got == pytest.approx(_convolve(sends_by_age, kernel), rel=1e-9, abs=1e-9)


@given(sends, kernels, st.floats(min_value=1.0, max_value=1_000.0))
# Found by a search: the second after next has 7e-15 of room (committed 42.999999999999993),
# so x is 7e-6 and 1 % more of it adds 4e-15 opens, which the float sum rounds back to 43.
@example([1433, 2], [1e-09, 0.03, 0.005], 43.0)
def test_allowed_sends_is_the_most_that_keeps_every_second_under_the_budget(
    sends_by_age: list[int], kernel: list[float], budget: float
) -> None:
    committed = ob.committed_opens(sends_by_age, kernel)
    x = ob.allowed_sends(committed, kernel, budget)
    # The next second's sends open d seconds ahead, d = 1 to the kernel's length; the sends
    # already made reach no further than `committed` does.
    seconds = range(1, len(kernel) + 1)
    ahead = [*committed, 0.0]
    assert x >= 0.0
    if math.isinf(x):
        assert all(k == 0.0 for k in kernel)
        return
    # A second already over the budget gets no more (x = 0); none is pushed over it.
    for d in seconds:
        after = ahead[d] + x * kernel[d - 1]
        assert after <= max(budget, ahead[d]) * (1 + 1e-9) + 1e-9
    if x > 0.0:
        # One more send's worth (1 %) would break some second. Summed exactly: when a second's
        # room is a few ulps of the budget, a float sum rounds the excess away.
        more = Fraction(x * 1.01 + 1e-6)
        assert any(
            Fraction(ahead[d]) + more * Fraction(kernel[d - 1]) > Fraction(budget) for d in seconds
        )


def test_allowed_sends_is_zero_once_a_second_is_full() -> None:
    assert ob.allowed_sends([0.0, 10.0, 5.0], [0.1, 0.1], budget=10.0) == 0.0
    assert ob.allowed_sends([0.0, 0.0, 0.0], [0.0, 0.0], budget=10.0) == math.inf


def test_the_kernels_last_second_bounds_the_sends_too() -> None:
    # Opens only two seconds after the send, where nothing committed reaches: 10 / 0.05.
    assert ob.allowed_sends([0.0, 0.0], [0.0, 0.05], budget=10.0) == pytest.approx(200.0)
    assert ob.allowed_sends([0.0, 4.0], [0.1, 0.05], budget=10.0) == pytest.approx(60.0)


@settings(max_examples=60, deadline=None)
@given(
    open_rate=st.floats(min_value=0.02, max_value=1.0),
    median=st.floats(min_value=1.0, max_value=30.0),
    sigma=st.floats(min_value=0.3, max_value=2.0),
    budget=st.floats(min_value=5.0, max_value=1_000.0),
    per_second=st.floats(min_value=1.0, max_value=5_000.0),
    devices=st.integers(min_value=1, max_value=20_000),
)
def test_closed_loop_the_expected_opens_never_exceed_the_budget(
    open_rate: float,
    median: float,
    sigma: float,
    budget: float,
    per_second: float,
    devices: int,
) -> None:
    """Second by second, the controller with the population's exact kernel: every second's
    expected opens stay under the budget it aims for (the MIN_RATE floor aside), and no
    second sends more than throttle.per_second."""
    horizon = 60
    kernel = ob.lognormal_kernel(open_rate, median, sigma, horizon)
    model = ob.OpensModel(kernel, "events")
    history: list[int] = []  # sends per second, oldest first
    left = devices
    for _ in range(200):
        sends_by_age = list(reversed(history))[: horizon + 1]
        decision = ob.decide(model, sends_by_age, budget=budget, per_second=per_second)
        assert ob.MIN_RATE <= decision.per_second <= per_second
        assert decision.limited == (decision.per_second < per_second)
        n = min(left, math.floor(decision.per_second))
        history.append(n)
        left -= n
    slack = ob.MIN_RATE * max(kernel) * horizon
    target = budget * ob.HEADROOM
    # Sends made at second t are opened from second t + 1 on (kernel[0] one second later).
    for t in range(len(history) + horizon):
        opens = sum(
            history[s] * kernel[t - s - 1] for s in range(len(history)) if 0 <= t - s - 1 < horizon
        )
        assert opens <= target * (1 + 1e-9) + slack


def test_a_steady_campaign_sends_at_budget_over_open_rate() -> None:
    """Once the budget is full, the controller sends as fast as opens leave it."""
    kernel = ob.lognormal_kernel(0.3, 20.0, 1.0)
    model = ob.OpensModel(kernel, "events")
    history: list[int] = []
    for _ in range(900):
        sends_by_age = list(reversed(history))[: ob.HORIZON_SECONDS + 1]
        decision = ob.decide(model, sends_by_age, budget=300.0, per_second=10_000.0, headroom=1.0)
        history.append(math.floor(decision.per_second))
    steady = sum(history[-300:]) / 300
    # 300 / 0.3 = 1,000 sends/s (plus the 0.3 % of opens later than the horizon), less what
    # spreading the room over SPREAD_SECONDS keeps in reserve and the whole sends.
    assert 950 <= steady <= 1_010


def test_the_lognormal_kernel_has_the_open_rate_and_median() -> None:
    kernel = ob.lognormal_kernel(0.3, 20.0, 1.0, horizon=3_600)
    model = ob.OpensModel(kernel, "events")
    assert model.open_rate == pytest.approx(0.3, abs=1e-6)
    assert model.median_delay == 20


def test_without_enough_opens_the_prior_stands() -> None:
    prior = ob.prior_model(ob.Prior(0.5, 5.0))
    assert ob.estimate([0] * 301, [0] * 301, prior) is prior
    few = [0] * 301
    few[3] = ob.MIN_OPENS - 1
    assert ob.estimate([0, 0, 0, 0, 5_000] + [0] * 296, few, prior) is prior


def _expected_data(
    kernel: tuple[float, ...], sends_at_age: dict[int, int], horizon: int
) -> tuple[list[int], list[int]]:
    """Sends by age and the opens reported so far at each delay, in expectation (rounded)."""
    sends_by_age = [0] * (horizon + 1)
    opens = [0.0] * (horizon + 1)
    for age, n in sends_at_age.items():
        sends_by_age[min(age, horizon)] += n
        for d in range(min(age, len(kernel))):
            opens[d] += n * kernel[d]
    return sends_by_age, [round(v) for v in opens]


def test_estimate_recovers_a_fully_observed_kernel() -> None:
    true = ob.lognormal_kernel(0.3, 20.0, 1.0)
    prior = ob.prior_model(ob.Prior(0.5, 5.0))
    horizon = len(true)
    sends_by_age, opens = _expected_data(true, {horizon: 100_000}, horizon)
    model = ob.estimate(sends_by_age, opens, prior)
    assert model.source == "events" and model.sends == 100_000
    assert model.open_rate == pytest.approx(sum(true), rel=0.01)
    assert model.median_delay == ob.OpensModel(true, "events").median_delay


def test_estimate_counts_a_delay_only_from_sends_observed_past_it() -> None:
    """10,000 sends 40 s ago, 10,000 sent 1 s ago: the recent ones have had no time to be
    opened and must not dilute the rate at delays they have not reached."""
    true = ob.lognormal_kernel(0.3, 20.0, 1.0)
    prior = ob.prior_model(ob.Prior(0.5, 5.0))
    horizon = len(true)
    sends_by_age, opens = _expected_data(true, {40: 10_000, 1: 10_000}, horizon)
    model = ob.estimate(sends_by_age, opens, prior)
    for d in range(1, 39):
        assert model.kernel[d] == pytest.approx(true[d], rel=0.1, abs=2e-4)
    # Past 40 s nothing was observed: the tail is extrapolated, never below the prior.
    assert all(model.kernel[d] >= prior.kernel[d] for d in range(40, horizon))
    assert model.open_rate == pytest.approx(sum(true), rel=0.15)


@given(
    ages=st.dictionaries(
        st.integers(min_value=0, max_value=320), st.integers(min_value=0, max_value=5_000)
    ),
    open_rate=st.floats(min_value=0.05, max_value=1.0),
)
def test_estimate_is_a_kernel(ages: dict[int, int], open_rate: float) -> None:
    true = ob.lognormal_kernel(open_rate, 15.0, 1.2)
    prior = ob.prior_model(ob.Prior(0.5, 5.0))
    sends_by_age, opens = _expected_data(true, ages, len(true))
    model = ob.estimate(sends_by_age, opens, prior)
    assert len(model.kernel) == len(prior.kernel)
    assert all(0.0 <= k <= 1.0 for k in model.kernel)


def test_feedback_scales_up_to_what_was_reported_never_down() -> None:
    kernel = [0.1] * 10
    sends_by_age = [0] * 30
    sends_by_age[11] = 1_000  # predicted: 100 opens a second at ages 2..11
    predicted = ob.predicted_past(sends_by_age, kernel, range(2, 12))
    assert predicted == pytest.approx(1_000.0)
    opens = [0] * 30
    for c in range(2, 12):
        opens[c] = 150
    assert ob.feedback_scale(sends_by_age, opens, kernel) == pytest.approx(1.5)
    assert ob.feedback_scale(sends_by_age, [0] * 30, kernel) == 1.0
    opens = [10_000] * 30
    assert ob.feedback_scale(sends_by_age, opens, kernel) == ob.FEEDBACK_MAX_SCALE
    # Too few opens predicted to judge.
    assert ob.feedback_scale([0, 0, 1], [50] * 30, kernel) == 1.0


def test_decide_says_why() -> None:
    prior = ob.prior_model(ob.Prior(0.5, 5.0))
    free = ob.decide(prior, [0] * 301, budget=300.0, per_second=100.0)
    assert not free.limited and free.per_second == 100.0
    assert "throttle.per_second 100/s" in free.reason
    busy = [0] * 301
    busy[1] = 3_000
    limited = ob.decide(prior, busy, budget=300.0, per_second=2_000.0)
    assert limited.limited and ob.MIN_RATE <= limited.per_second < 2_000.0
    assert limited.reason.startswith("opens budget 300/s: predicted from the deployment's prior")
    assert "open rate 50.0%" in limited.reason
    with pytest.raises(ValueError, match="budget and per_second must be > 0"):
        ob.decide(prior, [0], budget=0.0, per_second=1.0)
    with pytest.raises(ValueError, match="scale must be >= 1"):
        ob.decide(prior, [0], budget=1.0, per_second=1.0, scale=0.5)


def test_prior_is_validated() -> None:
    for bad in ((0.0, 5.0), (1.5, 5.0), (0.5, 0.0), (0.5, math.inf)):
        with pytest.raises(ValueError, match="must be"):
            ob.Prior(*bad)


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=2_000), st.integers(min_value=0, max_value=9))
    ),
    st.integers(min_value=0, max_value=2_000),
)
def test_binning_keeps_every_count(pairs: list[tuple[int, int]], now_second: int) -> None:
    horizon = 50
    aged = by_age(pairs, now_second, horizon)
    delayed = by_delay(pairs, horizon)
    assert len(aged) == len(delayed) == horizon + 1
    assert sum(aged) == sum(delayed) == sum(n for _s, n in pairs)
    for second, n in pairs:
        if n and 0 <= now_second - second < horizon:
            assert aged[now_second - second] >= n
