"""The wave check state machine, held to a reference written straight from the rule, over
every sequence of results up to a length for one check and random ones for several."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.checks.evaluate import (
    INCONCLUSIVE_LIMIT,
    Outcome,
    Result,
    Unreadable,
    decide,
    due,
    history_needed,
    judge,
)
from app.checks.spec import CheckSpec, Condition

P, F, U = Result.passed, Result.failed, Result.inconclusive


def check(name: str = "c", limit: int = 1) -> CheckSpec:
    return CheckSpec(
        name=name, builtin="failure_rate", pass_when=Condition(lt=1), failure_limit=limit
    )


def outcome(name: str, result: Result) -> Outcome:
    value = {P: 0.5, F: 2.0, U: None}[result]
    return Outcome(name, result, value, None if value is not None else "no data")


def _trailing(results: list[Result], kind: Result) -> int:
    return len(list(itertools.takewhile(lambda r: r is kind, reversed(results))))


def reference(
    checks: Sequence[CheckSpec], outcomes: Sequence[Outcome], hold_passed: bool
) -> tuple[bool, int | None]:
    """(release, index of the result that pauses), from the rule as written."""
    for i, o in enumerate(outcomes):
        spec = next((c for c in checks if c.name == o.name), None)
        if spec is None:
            continue
        mine = [x.result for x in outcomes[: i + 1] if x.name == o.name]
        conclusive = [r for r in mine if r is not U]
        trailing_fails = _trailing(conclusive, F)
        trailing_inconclusive = _trailing(mine, U)
        if o.result is F and trailing_fails >= spec.failure_limit:
            return False, i
        if o.result is U and trailing_inconclusive >= INCONCLUSIVE_LIMIT:
            return False, i
    for spec in checks:
        conclusive = [o.result for o in outcomes if o.name == spec.name and o.result is not U]
        if not conclusive or conclusive[-1] is not P:
            return False, None
    return hold_passed, None


def _compare(checks: Sequence[CheckSpec], outcomes: list[Outcome], hold_passed: bool) -> None:
    release, pause_at = reference(checks, outcomes, hold_passed)
    decision = decide(checks, outcomes, hold_passed=hold_passed)
    assert decision.release is release
    assert (decision.pause is not None) is (pause_at is not None)
    if pause_at is not None:
        # The first result that trips decides: the same pause from the prefix up to it.
        assert decide(checks, outcomes[: pause_at + 1], hold_passed=hold_passed).pause == (
            decision.pause
        )
        assert decide(checks, outcomes[:pause_at], hold_passed=hold_passed).pause is None
        tripped = outcomes[pause_at]
        assert repr(tripped.name) in decision.pause
        if tripped.result is F:
            assert "saw 2" in decision.pause and "needs < 1" in decision.pause
        else:
            assert decision.pause.startswith("checks inconclusive")


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_every_sequence_of_one_check_up_to_eight_results(limit: int) -> None:
    spec = check(limit=limit)
    for length in range(9):
        for results in itertools.product((P, F, U), repeat=length):
            outcomes = [outcome("c", r) for r in results]
            for hold_passed in (False, True):
                _compare([spec], outcomes, hold_passed)


@given(
    limits=st.tuples(*(st.integers(1, 4) for _ in range(3))),
    results=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "gone"]), st.sampled_from([P, F, U])), max_size=40
    ),
    hold_passed=st.booleans(),
)
def test_several_checks_match_the_reference(
    limits: tuple[int, int, int], results: list[tuple[str, Result]], hold_passed: bool
) -> None:
    checks = [check(n, limit) for n, limit in zip("abc", limits, strict=True)]
    _compare(checks, [outcome(n, r) for n, r in results], hold_passed)


def _latest(checks: Sequence[CheckSpec], outcomes: list[Outcome]) -> list[Outcome]:
    """What the repository reads: each check's newest history_needed results, in order."""
    keep: set[int] = set()
    for c in checks:
        mine = [i for i, o in enumerate(outcomes) if o.name == c.name]
        keep.update(mine[-history_needed(c) :])
    return [o for i, o in enumerate(outcomes) if i in keep]


@given(
    limits=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    results=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([P, F, U, U, U])),
        max_size=80,
    ),
)
def test_the_latest_results_decide_as_the_whole_history(
    limits: tuple[int, int], results: list[tuple[str, Result]]
) -> None:
    """The engine acts on the first pause, so it only ever judges a history that had not
    paused before its newest result; there, the newest results of each check suffice."""
    checks = [check(n, limit) for n, limit in zip("ab", limits, strict=True)]
    outcomes = [outcome(n, r) for n, r in results]
    for n in range(1, len(outcomes) + 1):
        if decide(checks, outcomes[: n - 1], hold_passed=True).pause is not None:
            break
        whole = decide(checks, outcomes[:n], hold_passed=True)
        assert decide(checks, _latest(checks, outcomes[:n]), hold_passed=True) == whole


def test_named_cases() -> None:
    a, b = check("a"), check("b", limit=3)
    # No results at all: held, never released on missing data.
    assert decide([a], [], hold_passed=True).release is False
    assert decide([a], [], hold_passed=True).waiting == ("a",)
    # No checks: the hold alone decides.
    assert decide([], [], hold_passed=True).release is True
    assert decide([], [], hold_passed=False).release is False
    # Inconclusive after a pass still allows the release; a fail below the limit does not.
    assert decide([a], [outcome("a", P), outcome("a", U)], hold_passed=True).release
    held = decide([b], [outcome("b", P), outcome("b", F)], hold_passed=True)
    assert (held.release, held.pause, held.waiting) == (False, None, ("b",))
    # Inconclusive between failures neither breaks nor extends the run.
    run = [outcome("b", r) for r in (F, U, F, U, U)]
    assert decide([b], run, hold_passed=True).pause is None
    tripped = decide([b], [*run, outcome("b", F)], hold_passed=True).pause
    assert tripped == "check 'b' failed 3 times in a row: saw 2, needs < 1"
    assert decide([a], [outcome("a", F)], hold_passed=True).pause == (
        "check 'a' failed once: saw 2, needs < 1"
    )
    silent = [outcome("a", U)] * INCONCLUSIVE_LIMIT
    assert decide([a], silent[:-1], hold_passed=True).pause is None
    assert decide([a], silent, hold_passed=True).pause == (
        f"checks inconclusive: check 'a' gave no usable answer {INCONCLUSIVE_LIMIT} times in a "
        "row (last: no data)"
    )


@pytest.mark.parametrize(
    ("reading", "result", "value"),
    [
        (0.01, P, 0.01),
        (0, P, 0.0),
        (1, F, 1.0),
        (5, F, 5.0),
        (math.nan, U, None),
        (math.inf, U, None),
        (-math.inf, U, None),
        (True, U, None),
        ("0.01", U, None),
        (None, U, None),
        (Unreadable("timeout after 5 s"), U, None),
    ],
)
def test_judge(reading: object, result: Result, value: float | None) -> None:
    got = judge(check(), reading)  # type: ignore[arg-type]
    assert (got.result, got.value) == (result, value)
    if result is U:
        assert got.detail


def test_due() -> None:
    assert due(10, None) and due(10, 10.0) and not due(10, 9.99)
