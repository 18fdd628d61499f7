"""The production staging policy (SPEC section 3, rule 4) as a pure function.

In production a live campaign must be staged: at least two waves, a first wave no larger than
a configured cap, and a hold of at least a configured minimum after every wave that is followed
by another. The last wave's hold is not checked because nothing is released after it. Reaching
100 % is not required: a campaign may deliberately stop at part of its audience.

This policy comes on top of ``app.rollout.planner.validate_waves``, not instead of it. It still
fails closed on values validation would have refused (a non-numeric first percent, a non-integer
hold), because the worker also runs it on rows that may have reached the database by another
road (rule 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from app.rollout.planner import WaveSpec


@dataclass(frozen=True)
class StagingProblem:
    """Why a rollout is not staged enough for production.

    ``index`` is the 0-based position of the offending wave, or ``None`` for the rollout as a
    whole (``field == "waves"``). ``field`` is ``"waves"``, ``"percent"`` or
    ``"hold_seconds"``. ``message`` is a sentence for a person and numbers waves from 1.
    """

    index: int | None
    field: str
    message: str


def _duration(seconds: int) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _first_wave_problem(first: WaveSpec, cap: Decimal) -> StagingProblem | None:
    percent: object = first.percent
    if not isinstance(percent, Decimal) or not percent.is_finite():
        return StagingProblem(
            0, "percent", "wave 1 percent is not a number, so its size cannot be checked."
        )
    if percent > cap:
        return StagingProblem(
            0,
            "percent",
            f"in production the first wave may reach at most {cap:f}% of the audience; "
            f"wave 1 is {percent:f}%. Add a smaller first wave.",
        )
    return None


def _hold_problem(index: int, wave: WaveSpec, min_hold_seconds: int) -> StagingProblem | None:
    hold: object = wave.hold_seconds
    number = index + 1
    if isinstance(hold, bool) or not isinstance(hold, int):
        return StagingProblem(
            index,
            "hold_seconds",
            f"wave {number} hold is not a whole number of seconds, so it cannot be checked.",
        )
    if hold < min_hold_seconds:
        return StagingProblem(
            index,
            "hold_seconds",
            f"in production every wave except the last must hold at least "
            f"{_duration(min_hold_seconds)} before the next wave is released; "
            f"wave {number} holds {_duration(hold)}.",
        )
    return None


def check_staging(
    waves: Sequence[WaveSpec], *, max_first_wave_percent: Decimal, min_hold_seconds: int
) -> list[StagingProblem]:
    """Return every way ``waves`` breaks the production staging policy; empty means it passes.

    Checks: at least two waves; the first wave's percent is at most ``max_first_wave_percent``;
    every wave except the last holds at least ``min_hold_seconds``. Problems are ordered by
    wave, the list-level problem first.

    Raises ``ValueError`` for a policy that makes no sense (a cap outside (0, 100] or a
    negative minimum hold): that is a configuration error, not a problem with the campaign.
    """
    if not max_first_wave_percent.is_finite() or not 0 < max_first_wave_percent <= 100:
        raise ValueError(
            f"max_first_wave_percent must be in (0, 100], not {max_first_wave_percent}"
        )
    if min_hold_seconds < 0:
        raise ValueError(f"min_hold_seconds must be >= 0, not {min_hold_seconds}")

    problems: list[StagingProblem] = []
    if len(waves) < 2:
        problems.append(
            StagingProblem(
                None,
                "waves",
                f"in production a live campaign needs at least two waves so a mistake reaches "
                f"only part of the audience; this one has {len(waves)}.",
            )
        )
    if waves:
        first = _first_wave_problem(waves[0], max_first_wave_percent)
        if first is not None:
            problems.append(first)
    # The last wave is excluded: its hold only delays a release that never comes.
    for index, wave in enumerate(waves[:-1]):
        hold = _hold_problem(index, wave, min_hold_seconds)
        if hold is not None:
            problems.append(hold)
    return problems
