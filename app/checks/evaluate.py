"""Judging wave checks: one reading into a result, a wave's results into a decision.

Pure: readings and results in, a decision out. The engine stores every result
(`wave_check_result`) and decides from the stored rows alone, so any worker decides alike.

A result is `pass`, `fail` or `inconclusive`. Inconclusive is every answer that is not
exactly one finite number (no data, a query error, a timeout, two series, NaN, a string):
missing data is never a pass, and never a failure either.

Per wave, results in order:

- the next wave may be released only once the hold has passed and every check has passed
  at least once since the wave's release with no failure after that pass (its last
  conclusive result is a pass); a check that has not run yet holds the wave;
- `failure_limit` failures of one check in a row pause the campaign, the reason naming the
  check, the value seen and the condition. A pass ends a run of failures; an inconclusive
  result neither ends nor extends it (not knowing is no evidence the trouble is over);
- INCONCLUSIVE_LIMIT inconclusive results of one check in a row pause it too ("checks
  inconclusive"): a wave is never released on a signal nobody can read, nor held forever.
  Any conclusive result ends such a run.

The first result that trips a pause decides; later results do not change it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.checks.spec import CheckSpec

# Inconclusive results of one check in a row that pause the campaign: a minute of silence
# at the default 10-second interval.
INCONCLUSIVE_LIMIT = 6


class Result(StrEnum):
    passed = "pass"
    failed = "fail"
    inconclusive = "inconclusive"


@dataclass(frozen=True)
class Unreadable:
    """A source gave no single number; why, for the record and the pause reason."""

    why: str


Reading = float | Unreadable


@dataclass(frozen=True)
class Outcome:
    """One run of one check, as stored."""

    name: str
    result: Result
    value: float | None = None
    detail: str | None = None


def judge(check: CheckSpec, reading: Reading) -> Outcome:
    """A reading held to the check's condition."""
    if isinstance(reading, Unreadable):
        return Outcome(check.name, Result.inconclusive, None, reading.why)
    # bool is an int in Python: a source answering `true` gave no number.
    if isinstance(reading, bool) or not isinstance(reading, int | float):
        return Outcome(check.name, Result.inconclusive, None, "the answer is not a number")
    value = float(reading)
    if not math.isfinite(value):
        return Outcome(check.name, Result.inconclusive, None, f"the answer is {value}")
    condition = check.pass_when.text()
    result = Result.passed if check.pass_when.holds(value) else Result.failed
    return Outcome(check.name, result, value, condition)


@dataclass(frozen=True)
class CheckState:
    passed: bool = False
    failures: int = 0
    inconclusive: int = 0


@dataclass(frozen=True)
class Decision:
    # The next wave may be released (the hold has passed and every check allows it).
    release: bool
    # Why the campaign must pause, or None.
    pause: str | None
    # Checks the wave still waits for (not passed since the release, or failed since).
    waiting: tuple[str, ...] = ()


def step(check: CheckSpec, state: CheckState, outcome: Outcome) -> tuple[CheckState, str | None]:
    """One result folded into a check's state, and the pause it trips, if any."""
    if outcome.result is Result.passed:
        return CheckState(passed=True), None
    if outcome.result is Result.failed:
        state = CheckState(passed=False, failures=state.failures + 1)
        if state.failures >= check.failure_limit:
            return state, fail_reason(check, outcome, state.failures)
        return state, None
    state = CheckState(state.passed, state.failures, state.inconclusive + 1)
    if state.inconclusive >= INCONCLUSIVE_LIMIT:
        return state, (
            f"checks inconclusive: check {check.name!r} gave no usable answer "
            f"{state.inconclusive} times in a row (last: {outcome.detail or 'no answer'})"
        )
    return state, None


def fail_reason(check: CheckSpec, outcome: Outcome, failures: int) -> str:
    times = "once" if failures == 1 else f"{failures} times in a row"
    return (
        f"check {check.name!r} failed {times}: saw {outcome.value:g}, "
        f"needs {check.pass_when.text()}"
    )


def decide(
    checks: Sequence[CheckSpec], outcomes: Iterable[Outcome], *, hold_passed: bool
) -> Decision:
    """A wave's results since its release (or since the operator's last resume), in order,
    into whether the next wave may go and whether to pause. Results of checks the wave no
    longer has are ignored."""
    by_name = {c.name: c for c in checks}
    states = {c.name: CheckState() for c in checks}
    for outcome in outcomes:
        check = by_name.get(outcome.name)
        if check is None:
            continue
        states[check.name], pause = step(check, states[check.name], outcome)
        if pause is not None:
            return Decision(release=False, pause=pause, waiting=_waiting(states))
    waiting = _waiting(states)
    return Decision(release=hold_passed and not waiting, pause=None, waiting=waiting)


def _waiting(states: dict[str, CheckState]) -> tuple[str, ...]:
    return tuple(name for name, state in states.items() if not state.passed)


def history_needed(check: CheckSpec) -> int:
    """How many of a check's latest results `decide` needs to decide as it would on all of
    them, for a wave that has not paused before its latest round: since the check's last
    pass there are at most failure_limit − 1 failures, and around them at most
    failure_limit runs of at most INCONCLUSIVE_LIMIT − 1 inconclusive results (more would
    have paused), so the last pass is among its latest failure_limit · INCONCLUSIVE_LIMIT
    results; a pass resets everything before it. One more covers the newest round."""
    return check.failure_limit * INCONCLUSIVE_LIMIT + 1


def due(interval_seconds: int, last_run_age: float | None) -> bool:
    """Whether a check runs now: never run this wave, or its interval has passed."""
    return last_run_age is None or last_run_age >= interval_seconds
