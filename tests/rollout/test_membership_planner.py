"""Wave membership against an audience that changes between waves: the planner's rule.

Devices leave the audience between two waves (invalid tokens, unregistered, no longer
matching the rules) and others join. Whatever happens, a release keeps every earlier row and
its wave, covers ⌈p·N⌉ devices of the audience as it is at the release, adds the first
devices of the campaign's order that the ledger does not hold, and a 100 % wave reaches every
device of the audience.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from app.rollout.bucketing import campaign_rotation
from app.rollout.planner import (
    cumulative_target,
    reference_order,
    reference_release,
    reference_waves,
)

D = Decimal

percents = st.decimals(
    min_value=D("0.0001"), max_value=D(100), places=4, allow_nan=False, allow_infinity=False
)


@dataclass(frozen=True)
class History:
    """A campaign's waves and the audience at each wave's release."""

    rotation: int
    percents: list[Decimal]
    audiences: list[frozenset[uuid.UUID]]


@st.composite
def histories(draw: st.DrawFn, *, last_is_all: bool = False) -> History:
    universe = draw(st.lists(st.uuids(), min_size=0, max_size=80, unique=True))
    chosen = sorted(draw(st.lists(percents, min_size=1, max_size=5, unique=True)))
    if last_is_all and chosen[-1] != 100:
        chosen.append(D(100))
    # Any device may be in or out at each release: leaving and coming back included.
    audiences = [
        frozenset(d for d in universe if draw(st.booleans())) if universe else frozenset()
        for _ in chosen
    ]
    rotation = draw(st.integers(min_value=0, max_value=2**32 - 1))
    return History(rotation, chosen, audiences)


def _release_all(history: History) -> list[dict[uuid.UUID, int]]:
    """The ledger after each release."""
    ledger: dict[uuid.UUID, int] = {}
    after = []
    for wave, (percent, audience) in enumerate(
        zip(history.percents, history.audiences, strict=True)
    ):
        ledger = reference_release(
            audience, ledger, rotation=history.rotation, wave=wave, percent=percent
        )
        after.append(ledger)
    return after


@settings(max_examples=300)
@given(histories())
def test_earlier_waves_never_change_and_each_device_is_held_once(history: History) -> None:
    before: dict[uuid.UUID, int] = {}
    for wave, ledger in enumerate(_release_all(history)):
        # Every earlier row is still there with its wave; the new rows are this wave's.
        assert {d: ledger[d] for d in before} == before
        assert {w for d, w in ledger.items() if d not in before} <= {wave}
        before = ledger


@settings(max_examples=300)
@given(histories())
def test_a_release_covers_its_share_of_the_audience_as_it_is_then(history: History) -> None:
    before: dict[uuid.UUID, int] = {}
    for percent, audience, ledger in zip(
        history.percents, history.audiences, _release_all(history), strict=True
    ):
        target = cumulative_target(percent, len(audience))
        held_before = sum(1 for d in audience if d in before)
        held_after = sum(1 for d in audience if d in ledger)
        # Exactly the share of the audience now, unless the ledger already held more of it
        # (the audience shrank): devices that left never count as covering anyone.
        assert held_after == max(target, held_before)
        added = set(ledger) - set(before)
        # The blast radius of one wave: never more than its target.
        assert len(added) <= target
        before = ledger


@settings(max_examples=300)
@given(histories())
def test_new_members_are_the_next_devices_of_the_campaigns_order(history: History) -> None:
    before: dict[uuid.UUID, int] = {}
    for audience, ledger in zip(history.audiences, _release_all(history), strict=True):
        added = set(ledger) - set(before)
        assert added <= audience
        fresh = [d for d in reference_order(audience, history.rotation) if d not in before]
        assert set(fresh[: len(added)]) == added
        before = ledger


@settings(max_examples=300)
@given(histories(last_is_all=True))
def test_the_last_wave_at_100_percent_reaches_every_device_of_the_audience(
    history: History,
) -> None:
    final = _release_all(history)[-1]
    assert history.audiences[-1] <= set(final)


@settings(max_examples=200)
@given(st.lists(st.uuids(), max_size=150, unique=True), st.uuids(), st.data())
def test_an_unchanged_audience_gives_exact_prefixes(
    ids: list[uuid.UUID], campaign_id: uuid.UUID, data: st.DataObject
) -> None:
    chosen = sorted(data.draw(st.lists(percents, min_size=1, max_size=5, unique=True)))
    history = History(campaign_rotation(campaign_id), chosen, [frozenset(ids)] * len(chosen))
    expected = reference_waves(ids, campaign_id, chosen)
    for wave, ledger in enumerate(_release_all(history)):
        assert {d for d, w in ledger.items() if w <= wave} == set(expected[wave])


def test_stale_tokens_found_by_earlier_waves_do_not_shorten_the_last_one() -> None:
    """The review's case: 10 % stale tokens, deactivated as the waves find them."""
    rng = random.Random(7)
    devices = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(10_000)]
    stale = set(rng.sample(devices, 1_000))
    rotation = campaign_rotation(uuid.UUID(int=rng.getrandbits(128), version=4))
    ledger: dict[uuid.UUID, int] = {}
    for wave, percent in enumerate([D(1), D(5), D(25), D(100)]):
        # A stale token leaves the audience once a wave has tried it.
        audience = [d for d in devices if not (d in stale and d in ledger)]
        ledger = reference_release(audience, ledger, rotation=rotation, wave=wave, percent=percent)
    never_sent = [d for d in devices if d not in ledger]
    assert never_sent == []
    # Sizes: 1 % of 10,000, then each share of the audience still reachable at its release.
    sizes = [sum(1 for w in ledger.values() if w == wave) for wave in range(4)]
    assert sizes[0] == 100
    assert sum(sizes) == 10_000
