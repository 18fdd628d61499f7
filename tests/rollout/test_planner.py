import itertools
import math
import random
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.rollout.bucketing import campaign_rotation, device_bucket, order_key
from app.rollout.planner import (
    MAX_WAVES,
    WaveProblem,
    WaveSpec,
    cumulative_target,
    new_members_for_wave,
    reference_order,
    reference_waves,
    validate_waves,
    wave_targets,
)

D = Decimal

valid_percents = st.decimals(
    min_value=D("0.0001"), max_value=D(100), places=4, allow_nan=False, allow_infinity=False
)
any_percent = st.decimals(
    min_value=D(0), max_value=D(100), places=4, allow_nan=False, allow_infinity=False
)
holds = st.integers(min_value=0, max_value=7 * 24 * 3600)


@st.composite
def valid_rollouts(draw: st.DrawFn) -> list[WaveSpec]:
    percents = sorted(draw(st.lists(valid_percents, min_size=1, max_size=MAX_WAVES, unique=True)))
    return [WaveSpec(percent, draw(holds)) for percent in percents]


@st.composite
def increasing_percents(draw: st.DrawFn) -> list[Decimal]:
    return sorted(draw(st.lists(valid_percents, min_size=1, max_size=6, unique=True)))


def _exact_ceil(percent: Decimal, n: int) -> int:
    # Independent of the implementation: integer arithmetic on the decimal's digits.
    sign, digits, exponent = percent.as_tuple()
    assert sign == 0
    assert isinstance(exponent, int)
    numerator = int("".join(map(str, digits))) * n
    denominator = 100
    if exponent >= 0:
        numerator *= 10**exponent
    else:
        denominator *= 10**-exponent
    return min(n, -(-numerator // denominator))


def _ids(count: int, seed: int) -> list[uuid.UUID]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]


def _keys(problems: list[WaveProblem]) -> list[tuple[int | None, str]]:
    return [(problem.index, problem.field) for problem in problems]


# --- validate_waves ------------------------------------------------------------------------


@given(valid_rollouts())
def test_valid_rollouts_have_no_problems(waves: list[WaveSpec]) -> None:
    assert validate_waves(waves) == []


@pytest.mark.parametrize(
    "waves",
    [
        [WaveSpec(D(100), 0)],
        [WaveSpec(D("0.0001"), 0), WaveSpec(D("0.0002"), 0)],
        [WaveSpec(D(1), 600), WaveSpec(D(5), 600), WaveSpec(D(25), 600), WaveSpec(D(100), 0)],
        [WaveSpec(D("5.000000"), 0)],  # trailing zeros are not decimal places
        [WaveSpec(D("1E+1"), 0)],
        [WaveSpec(D("99.9999"), 0)],
        [WaveSpec(D(n), 0) for n in range(1, MAX_WAVES + 1)],
    ],
)
def test_accepts_good_rollouts(waves: list[WaveSpec]) -> None:
    assert validate_waves(waves) == []


@pytest.mark.parametrize(
    ("waves", "expected"),
    [
        ([], [(None, "waves")]),
        ([WaveSpec(D(n), 0) for n in range(1, MAX_WAVES + 2)], [(None, "waves")]),
        ([WaveSpec(D(0), 0)], [(0, "percent")]),
        ([WaveSpec(D(-5), 0)], [(0, "percent")]),
        ([WaveSpec(D("100.0001"), 0)], [(0, "percent")]),
        ([WaveSpec(D("NaN"), 0)], [(0, "percent")]),
        ([WaveSpec(D("sNaN"), 0)], [(0, "percent")]),
        ([WaveSpec(D("Infinity"), 0)], [(0, "percent")]),
        ([WaveSpec(D("-Infinity"), 0)], [(0, "percent")]),
        ([WaveSpec(D("0.00001"), 0)], [(0, "percent")]),
        ([WaveSpec(D("1E-5"), 0)], [(0, "percent")]),
        # 31 decimal places: more than the default context precision can hold.
        ([WaveSpec(D("1.0000000000000000000000000000001"), 0)], [(0, "percent")]),
        ([WaveSpec(D(5), 0), WaveSpec(D(5), 0)], [(1, "percent")]),
        ([WaveSpec(D(5), 0), WaveSpec(D(10), 0), WaveSpec(D(9), 0)], [(2, "percent")]),
        ([WaveSpec(D(5), -1)], [(0, "hold_seconds")]),
        ([WaveSpec(D(5), 0), WaveSpec(D(6), -600)], [(1, "hold_seconds")]),
        # Out of range and too precise at once: both are reported.
        ([WaveSpec(D("-0.00001"), 0)], [(0, "percent"), (0, "percent")]),
        (
            [WaveSpec(D(50), -1), WaveSpec(D(20), 10), WaveSpec(D(120), 10)],
            [(0, "hold_seconds"), (1, "percent"), (2, "percent")],
        ),
    ],
)
def test_rejects_bad_rollouts(
    waves: list[WaveSpec], expected: list[tuple[int | None, str]]
) -> None:
    assert _keys(validate_waves(waves)) == expected


@pytest.mark.parametrize(
    ("percent", "hold", "field"),
    [
        (5.0, 0, "percent"),
        (5, 0, "percent"),
        ("5", 0, "percent"),
        (True, 0, "percent"),
        (None, 0, "percent"),
        (D(5), 1.5, "hold_seconds"),
        (D(5), 600.0, "hold_seconds"),
        (D(5), True, "hold_seconds"),
        (D(5), "600", "hold_seconds"),
        (D(5), None, "hold_seconds"),
    ],
)
def test_rejects_values_of_the_wrong_type(percent: Any, hold: Any, field: str) -> None:
    assert _keys(validate_waves([WaveSpec(percent, hold)])) == [(0, field)]


def test_too_many_waves_still_reports_each_bad_wave() -> None:
    waves = [WaveSpec(D(n), 0) for n in range(1, MAX_WAVES + 2)]
    waves[3] = WaveSpec(D(4), -1)
    assert _keys(validate_waves(waves)) == [(None, "waves"), (3, "hold_seconds")]


@pytest.mark.parametrize(
    ("waves", "message"),
    [
        ([], "a rollout needs at least one wave."),
        (
            [WaveSpec(D(n), 0) for n in range(1, 24)],
            "a rollout has at most 20 waves; this one has 23.",
        ),
        (
            [WaveSpec(D(10), 0), WaveSpec(D(25), 0), WaveSpec(D(20), 0)],
            "wave 3 percent 20 must be greater than wave 2 percent 25.",
        ),
        ([WaveSpec(D(0), 0)], "wave 1 percent 0 must be greater than 0 and at most 100."),
        (
            [WaveSpec(D("1E+3"), 0)],
            "wave 1 percent 1000 must be greater than 0 and at most 100.",
        ),
        (
            [WaveSpec(D("2.12345"), 0)],
            "wave 1 percent 2.12345 has more than 4 decimal places; round it to at most 4.",
        ),
        ([WaveSpec(D(5), -3)], "wave 1 hold_seconds -3 must be 0 or more."),
        ([WaveSpec(D("NaN"), 0)], "wave 1 percent must be a finite number."),
    ],
)
def test_messages_say_what_to_fix(waves: list[WaveSpec], message: str) -> None:
    assert [problem.message for problem in validate_waves(waves)] == [message]


@st.composite
def broken_rollouts(draw: st.DrawFn) -> tuple[list[WaveSpec], int, str]:
    waves = draw(valid_rollouts())
    index = draw(st.integers(min_value=0, max_value=len(waves) - 1))
    wave = waves[index]
    breakage = draw(st.sampled_from(["negative_hold", "zero", "above_100", "too_precise"]))
    if breakage == "negative_hold":
        waves[index] = WaveSpec(wave.percent, draw(st.integers(max_value=-1)))
        return waves, index, "hold_seconds"
    if breakage == "zero":
        waves[index] = WaveSpec(D(0), wave.hold_seconds)
    elif breakage == "above_100":
        waves[index] = WaveSpec(D(100) + draw(valid_percents), wave.hold_seconds)
    else:
        waves[index] = WaveSpec(wave.percent + D("0.00001"), wave.hold_seconds)
    return waves, index, "percent"


@given(broken_rollouts())
def test_every_break_is_reported_at_its_wave(case: tuple[list[WaveSpec], int, str]) -> None:
    waves, index, field = case
    problems = validate_waves(waves)
    assert (index, field) in _keys(problems)
    # A broken percent can also break the strict increase of its neighbour; nothing else.
    assert {i for i, _ in _keys(problems)} <= {index, index + 1}
    assert all(problem.message for problem in problems)


# --- cumulative_target / wave_targets / new_members_for_wave -------------------------------


@given(any_percent, st.integers(min_value=0, max_value=10**7))
def test_cumulative_target_is_exact_ceiling(percent: Decimal, n: int) -> None:
    target = cumulative_target(percent, n)
    assert target == _exact_ceil(percent, n)
    assert 0 <= target <= n
    if n > 0 and percent > 0:
        assert target >= 1


@given(
    st.decimals(min_value=D(0), max_value=D(100), allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=10**7),
)
def test_cumulative_target_is_exact_at_any_precision(percent: Decimal, n: int) -> None:
    assert cumulative_target(percent, n) == _exact_ceil(percent, n)


@pytest.mark.parametrize(
    ("percent", "n", "expected"),
    [
        # Each of these is off by one in float arithmetic.
        (D(7), 100, 7),
        (D("0.0022"), 10**7, 220),
        (D("0.0085"), 10**7, 850),
        # Ceiling, not rounding.
        (D(1), 101, 2),
        (D("0.0001"), 1, 1),
        (D(50), 3, 2),
        (D(100), 10**7, 10**7),
        (D(0), 10**7, 0),
        (D(5), 0, 0),
        (D(100), 0, 0),
        # Capped at N.
        (D(150), 10, 10),
        (D("1E+6"), 7, 7),
    ],
)
def test_cumulative_target_examples(percent: Decimal, n: int, expected: int) -> None:
    assert cumulative_target(percent, n) == expected


@pytest.mark.parametrize(
    ("percent", "n"),
    [(D(-1), 10), (D("-0.0001"), 10), (D("NaN"), 10), (D("Infinity"), 10), (D(5), -1)],
)
def test_cumulative_target_rejects_nonsense(percent: Decimal, n: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        cumulative_target(percent, n)


@given(increasing_percents(), st.integers(min_value=0, max_value=10**7))
def test_wave_targets_are_cumulative(percents: list[Decimal], n: int) -> None:
    targets = wave_targets(percents, n)
    assert targets == [_exact_ceil(p, n) for p in percents]
    assert all(a <= b for a, b in itertools.pairwise(targets))


@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=0, max_value=10**7))
def test_new_members_never_negative(target: int, ledger: int) -> None:
    added = new_members_for_wave(target, ledger)
    assert added == (target - ledger if target >= ledger else 0)
    # The ledger after the release covers the target and never shrinks.
    assert ledger + added == max(target, ledger)


@pytest.mark.parametrize(("target", "ledger"), [(-1, 0), (0, -1)])
def test_new_members_rejects_negative_counts(target: int, ledger: int) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        new_members_for_wave(target, ledger)


def test_shrunk_audience_never_shrinks_earlier_waves() -> None:
    # Wave 1 released 50 of 1000; by wave 2 the audience is 100 and 5% of it is 5.
    released = cumulative_target(D(5), 1000)
    assert new_members_for_wave(cumulative_target(D(5), 100), released) == 0
    assert new_members_for_wave(cumulative_target(D(60), 100), released) == 10


# --- reference_order / reference_waves -----------------------------------------------------

device_lists = st.lists(st.uuids(), max_size=300)


@given(device_lists, st.integers(min_value=0, max_value=2**32 - 1), st.randoms())
def test_reference_order_ignores_input_order_and_duplicates(
    ids: list[uuid.UUID], rotation: int, rng: random.Random
) -> None:
    order = reference_order(ids, rotation)
    shuffled = ids + ids[: len(ids) // 2]
    rng.shuffle(shuffled)
    assert reference_order(shuffled, rotation) == order
    assert reference_order(iter(shuffled), rotation) == order
    assert len(order) == len(set(order)) == len(set(ids))
    assert set(order) == set(ids)


@given(device_lists, st.integers(min_value=0, max_value=2**32 - 1))
def test_reference_order_is_ascending_order_key_then_id(
    ids: list[uuid.UUID], rotation: int
) -> None:
    order = reference_order(ids, rotation)
    keys = [(order_key(device_bucket(d), rotation), d.bytes) for d in order]
    assert all(a < b for a, b in itertools.pairwise(keys))


def test_reference_order_breaks_bucket_ties_by_id() -> None:
    # A real 32-bit collision among sequential ids, found once by brute force.
    low = uuid.UUID("00000000-0000-0000-0000-000000001d0c")
    high = uuid.UUID("00000000-0000-0000-0000-0000000024be")
    assert device_bucket(low) == device_bucket(high) == 1733343560
    neighbour = uuid.UUID(int=0)
    for rotation in (0, 1733343560, 1733343561, 2**32 - 1):
        order = reference_order([high, neighbour, low], rotation)
        assert order.index(low) + 1 == order.index(high)


@settings(max_examples=60)
@given(device_lists, st.uuids(), increasing_percents(), st.randoms())
def test_reference_waves_are_exact_nested_prefixes(
    ids: list[uuid.UUID], campaign_id: uuid.UUID, percents: list[Decimal], rng: random.Random
) -> None:
    waves = reference_waves(ids, campaign_id, percents)
    audience = set(ids)
    n = len(audience)
    order = reference_order(ids, campaign_rotation(campaign_id))

    assert len(waves) == len(percents)
    for wave, percent in zip(waves, percents, strict=True):
        assert len(wave) == _exact_ceil(percent, n)
        assert len(wave) == len(set(wave))  # no device twice
        assert wave == order[: len(wave)]
    for earlier, later in itertools.pairwise(waves):
        assert later[: len(earlier)] == earlier
    if percents[-1] == 100:
        assert set(waves[-1]) == audience

    shuffled = list(ids)
    rng.shuffle(shuffled)
    assert reference_waves(shuffled, campaign_id, percents) == waves


@given(device_lists, st.uuids(), st.lists(any_percent, min_size=1, max_size=6))
def test_reference_waves_never_shrink_even_for_unsorted_percents(
    ids: list[uuid.UUID], campaign_id: uuid.UUID, percents: list[Decimal]
) -> None:
    waves = reference_waves(ids, campaign_id, percents)
    n = len(set(ids))
    for k, wave in enumerate(waves):
        assert len(wave) == max(_exact_ceil(p, n) for p in percents[: k + 1])
    for earlier, later in itertools.pairwise(waves):
        assert later[: len(earlier)] == earlier


def test_reference_waves_of_empty_audience_are_empty() -> None:
    assert reference_waves([], uuid.uuid4(), [D(1), D(100)]) == [[], []]


def test_reference_waves_are_stable_across_calls() -> None:
    ids = _ids(500, seed=1)
    campaign_id = uuid.UUID("0b8c1e0e-5f4c-4b1a-9a63-3c1d6f0d2a11")
    percents = [D(1), D("12.5"), D(50), D(100)]
    first = reference_waves(ids, campaign_id, percents)
    assert reference_waves(list(reversed(ids)), campaign_id, percents) == first
    assert [len(w) for w in first] == [5, 63, 250, 500]


def test_different_campaigns_start_from_different_devices() -> None:
    ids = _ids(1000, seed=2)
    campaigns = _ids(50, seed=3)
    first_percent = [frozenset(reference_waves(ids, c, [D(1)])[0]) for c in campaigns]
    assert all(len(s) == 10 for s in first_percent)
    assert len(set(first_percent)) > 1
    # 50 uniform starting points on 1000 devices: about 49 distinct first devices expected.
    first_devices = {reference_waves(ids, c, [D("0.1")])[0][0] for c in campaigns}
    assert len(first_devices) >= 40


def test_first_tenth_overlap_between_campaigns_is_near_ten_percent() -> None:
    # Each campaign's first 10% is an arc of a tenth of the circle starting at its rotation.
    # For two independent rotations the shared fraction X is 0 with probability 0.8 and
    # uniform on [0, 1] otherwise: E[X] = 0.1, sd(X) = 0.238. Over the 1225 pairs of 50
    # campaigns the mean has sd about 0.0068 (pair terms are uncorrelated because E[X | one
    # rotation] is 0.1 whatever that rotation is), so +/- 0.035 is a 5-sigma bound. A scheme
    # where campaigns shared their early devices would give a mean near 1.
    ids = _ids(1000, seed=4)
    campaigns = _ids(50, seed=5)
    tenths = [set(reference_waves(ids, c, [D(10)])[0]) for c in campaigns]
    overlaps = [len(a & b) / 100 for a, b in itertools.combinations(tenths, 2)]
    mean = sum(overlaps) / len(overlaps)
    assert abs(mean - 0.1) <= 0.035
    # Most pairs share nothing at all; identical pairs need two rotations in the same gap
    # between neighbouring devices, which is rare.
    assert sum(1 for o in overlaps if o == 0) / len(overlaps) > 0.6
    assert sum(1 for o in overlaps if o == 1) / len(overlaps) < 0.01


def test_ceil_helper_matches_math_ceil_on_simple_cases() -> None:
    # Guards the independent oracle used above.
    assert _exact_ceil(D(1), 101) == math.ceil(101 / 100)
    assert _exact_ceil(D("12.5"), 8) == 1
    assert _exact_ceil(D("1E+1"), 30) == 3
