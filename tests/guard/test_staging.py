from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.guard.staging import StagingProblem, check_staging
from app.rollout.planner import WaveSpec

D = Decimal
CAP = D(5)
MIN_HOLD = 600


def _check(waves: list[WaveSpec]) -> list[StagingProblem]:
    return check_staging(waves, max_first_wave_percent=CAP, min_hold_seconds=MIN_HOLD)


def _keys(problems: list[StagingProblem]) -> list[tuple[int | None, str]]:
    return [(problem.index, problem.field) for problem in problems]


@pytest.mark.parametrize(
    "waves",
    [
        [WaveSpec(D(1), 600), WaveSpec(D(100), 0)],
        [WaveSpec(D(5), 600), WaveSpec(D(25), 3600), WaveSpec(D(100), 0)],
        # The last wave need not reach 100 %.
        [WaveSpec(D("0.5"), 900), WaveSpec(D(20), 0)],
        # The last wave's hold is irrelevant, however short.
        [WaveSpec(D(2), 600), WaveSpec(D(10), 600), WaveSpec(D(50), 1)],
    ],
)
def test_accepts_staged_rollouts(waves: list[WaveSpec]) -> None:
    assert _check(waves) == []


@pytest.mark.parametrize(
    ("waves", "expected"),
    [
        ([], [(None, "waves")]),
        ([WaveSpec(D(1), 600)], [(None, "waves")]),
        ([WaveSpec(D(100), 0)], [(None, "waves"), (0, "percent")]),
        ([WaveSpec(D("5.0001"), 600), WaveSpec(D(100), 0)], [(0, "percent")]),
        ([WaveSpec(D(50), 600), WaveSpec(D(100), 0)], [(0, "percent")]),
        ([WaveSpec(D(1), 599), WaveSpec(D(100), 0)], [(0, "hold_seconds")]),
        ([WaveSpec(D(1), 0), WaveSpec(D(100), 0)], [(0, "hold_seconds")]),
        (
            [WaveSpec(D(1), 600), WaveSpec(D(10), 60), WaveSpec(D(50), 600), WaveSpec(D(100), 0)],
            [(1, "hold_seconds")],
        ),
        (
            [WaveSpec(D(10), 10), WaveSpec(D(20), 10), WaveSpec(D(30), 10)],
            [(0, "percent"), (0, "hold_seconds"), (1, "hold_seconds")],
        ),
        # A lone wave is also the last, so its hold is not checked.
        ([WaveSpec(D(10), 0)], [(None, "waves"), (0, "percent")]),
    ],
)
def test_rejects_unstaged_rollouts(
    waves: list[WaveSpec], expected: list[tuple[int | None, str]]
) -> None:
    assert _keys(_check(waves)) == expected


def test_first_wave_exactly_at_the_cap_is_allowed() -> None:
    assert _check([WaveSpec(D("5.0000"), MIN_HOLD), WaveSpec(D(100), 0)]) == []


@pytest.mark.parametrize(
    ("percent", "hold", "expected"),
    [
        (D("NaN"), 600, [(0, "percent")]),
        (D("sNaN"), 600, [(0, "percent")]),
        (D("Infinity"), 600, [(0, "percent")]),
        (5.0, 600, [(0, "percent")]),
        (None, 600, [(0, "percent")]),
        (D(1), 600.0, [(0, "hold_seconds")]),
        (D(1), True, [(0, "hold_seconds")]),
        (D(1), None, [(0, "hold_seconds")]),
    ],
)
def test_fails_closed_on_values_it_cannot_read(
    percent: Any, hold: Any, expected: list[tuple[int | None, str]]
) -> None:
    assert _keys(_check([WaveSpec(percent, hold), WaveSpec(D(100), 0)])) == expected


def test_messages_say_what_to_fix() -> None:
    problems = _check([WaveSpec(D(10), 60)])
    assert [p.message for p in problems] == [
        "in production a live campaign needs at least two waves so a mistake reaches only "
        "part of the audience; this one has 1.",
        "in production the first wave may reach at most 5% of the audience; wave 1 is 10%. "
        "Add a smaller first wave.",
    ]
    problems = _check([WaveSpec(D(1), 600), WaveSpec(D(2), 90), WaveSpec(D(100), 0)])
    assert [p.message for p in problems] == [
        "in production every wave except the last must hold at least 10 min before the next "
        "wave is released; wave 2 holds 90 s.",
    ]


@pytest.mark.parametrize(
    ("min_hold", "hold", "phrase"),
    [
        (7200, 3600, "at least 2 h before the next wave is released; wave 1 holds 1 h."),
        (45, 30, "at least 45 s before the next wave is released; wave 1 holds 30 s."),
        (90, 60, "at least 90 s before the next wave is released; wave 1 holds 1 min."),
    ],
)
def test_durations_read_naturally(min_hold: int, hold: int, phrase: str) -> None:
    (problem,) = check_staging(
        [WaveSpec(D(1), hold), WaveSpec(D(100), 0)],
        max_first_wave_percent=CAP,
        min_hold_seconds=min_hold,
    )
    assert problem.message.endswith(phrase)


def test_configured_policy_is_used() -> None:
    waves = [WaveSpec(D(20), 60), WaveSpec(D(100), 0)]
    assert check_staging(waves, max_first_wave_percent=D(25), min_hold_seconds=60) == []
    assert _keys(check_staging(waves, max_first_wave_percent=D(10), min_hold_seconds=61)) == [
        (0, "percent"),
        (0, "hold_seconds"),
    ]


@pytest.mark.parametrize(
    ("cap", "min_hold"),
    [(D(0), 600), (D(-1), 600), (D("100.01"), 600), (D("NaN"), 600), (D(5), -1)],
)
def test_nonsense_policy_is_a_configuration_error(cap: Decimal, min_hold: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        check_staging(
            [WaveSpec(D(1), 600), WaveSpec(D(100), 0)],
            max_first_wave_percent=cap,
            min_hold_seconds=min_hold,
        )


percents = st.decimals(
    min_value=D("0.0001"), max_value=D(100), places=4, allow_nan=False, allow_infinity=False
)


@st.composite
def rollouts(draw: st.DrawFn) -> list[WaveSpec]:
    values = sorted(draw(st.lists(percents, max_size=8, unique=True)))
    return [WaveSpec(v, draw(st.integers(min_value=0, max_value=7200))) for v in values]


@given(
    rollouts(),
    st.decimals(min_value=D("0.0001"), max_value=D(100), places=4),
    st.integers(min_value=0, max_value=7200),
)
def test_matches_the_policy_as_written(waves: list[WaveSpec], cap: Decimal, min_hold: int) -> None:
    expected: list[tuple[int | None, str]] = []
    if len(waves) < 2:
        expected.append((None, "waves"))
    if waves and waves[0].percent > cap:
        expected.append((0, "percent"))
    expected += [
        (i, "hold_seconds")
        for i, wave in enumerate(waves)
        if i < len(waves) - 1 and wave.hold_seconds < min_hold
    ]
    problems = check_staging(waves, max_first_wave_percent=cap, min_hold_seconds=min_hold)
    assert _keys(problems) == expected
    assert all(problem.message for problem in problems)
