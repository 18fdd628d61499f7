"""Wave planning: validating a rollout and sizing each wave exactly.

Invariants the rest of the system relies on (SPEC section 2):

* Wave *k* covers ``T_k = ceil(p_k / 100 * N)`` devices of the audience, N being the
  audience size when the wave is released (active devices matching the rules). It adds
  ``T_k - H`` devices, never fewer than 0, where H counts the devices of earlier waves that
  are *still in the audience*: a device that left since (invalid token, unregistered, no
  longer matching) frees its place and never counts as covering anyone. The added devices
  are the first ones of the campaign's order of the audience that the ledger does not hold
  yet. So a wave of 100 % reaches every device of the audience at its release, and with an
  unchanged audience wave *k* holds exactly the first ``T_k`` devices of the order. The
  arithmetic is exact (``Fraction``), never float: at N = 10**7 a float product can land
  one device off.
* Waves are cumulative: the ledger only ever grows and a row keeps its wave, so a device
  released in wave *k* is part of every later wave, earlier waves never change, and a device is
  sent at most once per campaign.
* ``reference_order``, ``reference_release`` and ``reference_waves`` are the executable
  specification of the SQL that releases waves: the database must produce the same devices in
  the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Final
from uuid import UUID

from app.rollout.bucketing import campaign_rotation, device_bucket, order_key

MAX_WAVES: Final = 20
MAX_PERCENT_DECIMAL_PLACES: Final = 4

_HUNDRED: Final = Decimal(100)


@dataclass(frozen=True)
class WaveSpec:
    """One wave of a rollout: a cumulative percentage of the audience and a hold.

    ``hold_seconds`` is the minimum time to observe this wave before the next one is released.
    """

    percent: Decimal
    hold_seconds: int


@dataclass(frozen=True)
class WaveProblem:
    """Why a rollout is invalid.

    ``index`` is the 0-based position of the offending wave, or ``None`` when the problem is
    with the list as a whole (``field == "waves"``). ``field`` is ``"percent"``,
    ``"hold_seconds"`` or ``"waves"``. ``message`` is a sentence for a person and numbers
    waves from 1, as the form does.
    """

    index: int | None
    field: str
    message: str


def _decimal_places(value: Decimal) -> int:
    # Counted on the digit tuple rather than via normalize()/quantize(), which round to the
    # context precision and would hide a 30th decimal place. Trailing zeros do not count:
    # "5.000000" is 5. Callers only pass finite values.
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return 0
    trailing_zeros = 0
    for digit in reversed(digits):
        if digit != 0 or trailing_zeros == -exponent:
            break
        trailing_zeros += 1
    return -exponent - trailing_zeros


def _show(value: Decimal) -> str:
    # Fixed-point so that "1E+1" reads as "10"; users never typed scientific notation.
    return f"{value:f}"


def _percent_problems(index: int, percent: object) -> list[WaveProblem]:
    wave = index + 1
    if isinstance(percent, bool) or not isinstance(percent, Decimal):
        return [WaveProblem(index, "percent", f"wave {wave} percent must be a decimal number.")]
    if not percent.is_finite():
        return [WaveProblem(index, "percent", f"wave {wave} percent must be a finite number.")]
    problems: list[WaveProblem] = []
    if not 0 < percent <= _HUNDRED:
        problems.append(
            WaveProblem(
                index,
                "percent",
                f"wave {wave} percent {_show(percent)} must be greater than 0 and at most 100.",
            )
        )
    if _decimal_places(percent) > MAX_PERCENT_DECIMAL_PLACES:
        problems.append(
            WaveProblem(
                index,
                "percent",
                f"wave {wave} percent {_show(percent)} has more than "
                f"{MAX_PERCENT_DECIMAL_PLACES} decimal places; round it to at most "
                f"{MAX_PERCENT_DECIMAL_PLACES}.",
            )
        )
    return problems


def _hold_problems(index: int, hold_seconds: object) -> list[WaveProblem]:
    wave = index + 1
    if isinstance(hold_seconds, bool) or not isinstance(hold_seconds, int):
        return [
            WaveProblem(
                index,
                "hold_seconds",
                f"wave {wave} hold_seconds must be a whole number of seconds.",
            )
        ]
    if hold_seconds < 0:
        return [
            WaveProblem(
                index,
                "hold_seconds",
                f"wave {wave} hold_seconds {hold_seconds} must be 0 or more.",
            )
        ]
    return []


def _comparable(percent: object) -> Decimal | None:
    if isinstance(percent, Decimal) and percent.is_finite():
        return percent
    return None


def validate_waves(waves: Sequence[WaveSpec]) -> list[WaveProblem]:
    """Return every problem with a rollout's waves; an empty list means it is valid.

    Rules: at least one and at most ``MAX_WAVES`` waves; each percent is a finite decimal in
    (0, 100] with at most ``MAX_PERCENT_DECIMAL_PLACES`` decimal places; percents strictly
    increase; each ``hold_seconds`` is an integer >= 0. All problems are reported, not just the
    first, ordered by wave (list-level problems first). Field values are checked at run time
    too, because rollouts also arrive from stored rows and not only from typed callers.
    """
    problems: list[WaveProblem] = []
    if not waves:
        problems.append(WaveProblem(None, "waves", "a rollout needs at least one wave."))
    elif len(waves) > MAX_WAVES:
        problems.append(
            WaveProblem(
                None,
                "waves",
                f"a rollout has at most {MAX_WAVES} waves; this one has {len(waves)}.",
            )
        )
    previous: Decimal | None = None
    for index, wave in enumerate(waves):
        problems.extend(_percent_problems(index, wave.percent))
        current = _comparable(wave.percent)
        if previous is not None and current is not None and current <= previous:
            problems.append(
                WaveProblem(
                    index,
                    "percent",
                    f"wave {index + 1} percent {_show(current)} must be greater than "
                    f"wave {index} percent {_show(previous)}.",
                )
            )
        problems.extend(_hold_problems(index, wave.hold_seconds))
        previous = current
    return problems


def cumulative_target(percent: Decimal, audience_size: int) -> int:
    """Return how many devices a wave of ``percent`` covers: ``ceil(percent / 100 * N)``.

    Exact (no float). Capped at ``audience_size``; 0 when the audience is empty or the percent
    is 0. Any positive percent of a non-empty audience covers at least one device, which is what
    makes a tiny first wave observable at all.

    Raises ``ValueError`` for a negative or non-finite percent or a negative audience size.
    """
    if not percent.is_finite() or percent < 0:
        raise ValueError(f"percent must be a finite number >= 0, not {percent}")
    if audience_size < 0:
        raise ValueError(f"audience_size must be >= 0, not {audience_size}")
    target = math.ceil(Fraction(percent) * audience_size / 100)
    return min(target, audience_size)


def wave_targets(percents: Sequence[Decimal], audience_size: int) -> list[int]:
    """Return the cumulative target of each wave for a fixed audience size."""
    return [cumulative_target(percent, audience_size) for percent in percents]


def new_members_for_wave(cumulative_target: int, already_in_ledger: int) -> int:
    """Return how many devices to add to the ledger when releasing a wave.

    ``already_in_ledger`` counts the ledger's devices that are still in the audience (see the
    module docstring). Never negative: if the audience shrank since an earlier wave was
    released, the target can fall below what the ledger already holds, and earlier waves are
    never shrunk; devices already released stay released and the wave simply adds nobody.

    Raises ``ValueError`` if either count is negative.
    """
    if cumulative_target < 0 or already_in_ledger < 0:
        raise ValueError(
            f"counts must be >= 0, not target={cumulative_target} ledger={already_in_ledger}"
        )
    return max(0, cumulative_target - already_in_ledger)


def reference_order(device_ids: Iterable[UUID], rotation: int) -> list[UUID]:
    """Return the campaign's send order: ascending ``(order_key, device_id)``, duplicates dropped.

    The result depends only on the set of ids and the rotation, never on input order. This is
    the executable specification for the SQL ``ORDER BY`` (see ``app.rollout.bucketing``);
    UUIDs compare like their 16 bytes big-endian, which is how PostgreSQL orders ``uuid`` and how
    SQLite orders the lowercase hex text SQLAlchemy stores.
    """
    return sorted(set(device_ids), key=lambda d: (order_key(device_bucket(d), rotation), d))


def reference_release(
    audience: Iterable[UUID],
    ledger: Mapping[UUID, int],
    *,
    rotation: int,
    wave: int,
    percent: Decimal,
) -> dict[UUID, int]:
    """Return the ledger (device -> wave) after releasing ``wave`` of ``percent``.

    ``audience`` is the campaign's audience at the release, ``ledger`` what earlier waves
    released (it may hold devices that have left the audience since). The wave covers
    ``cumulative_target(percent, len(audience))`` devices of the audience, counting those the
    ledger already holds, and adds the first devices of the campaign's order of the audience
    that the ledger does not hold; every row already there keeps its wave.
    """
    order = reference_order(audience, rotation)
    held = sum(1 for device in order if device in ledger)
    members = new_members_for_wave(cumulative_target(percent, len(order)), held)
    fresh = [device for device in order if device not in ledger][:members]
    return {**ledger, **dict.fromkeys(fresh, wave)}


def reference_waves(
    device_ids: Iterable[UUID], campaign_id: UUID, percents: Sequence[Decimal]
) -> list[list[UUID]]:
    """Return the cumulative membership of each wave for a fixed audience.

    Built the way the worker fills the ledger (``new_members_for_wave`` on top of what earlier
    waves released), so each wave is a prefix of the next even for percents that do not
    increase.
    """
    order = reference_order(device_ids, campaign_rotation(campaign_id))
    released = 0
    waves: list[list[UUID]] = []
    for target in wave_targets(percents, len(order)):
        released += new_members_for_wave(target, released)
        waves.append(order[:released])
    return waves
