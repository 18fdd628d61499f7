"""The failure guardrail's rule (app.rollout.guardrail): a 95 % Wilson lower bound over the
rows decided so far, against the campaign's threshold; and, through the real engine, a small
first wave whose failures are a pattern pauses the campaign before the next wave."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.delivery.models import Delivery
from app.devices.models import Device
from app.rollout import engine
from app.rollout.guardrail import MIN_FAILURES, sends_that_clear, tripped, wilson_lower_bound
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    deliveries,
    run_engine,
    sender_deps,
)

FIVE = Decimal(5)


def _trips(failed: int, sent: int, threshold: Decimal = FIVE) -> bool:
    return tripped(failed=failed, sent=sent, threshold_percent=threshold, wave_number=1) is not None


@pytest.mark.parametrize(
    ("failed", "sent", "expected"),
    [
        (5, 5, True),  # 5 of a 10-device wave: the case the old rule (10 failures) missed
        (1, 9, False),
        (2, 0, False),  # below MIN_FAILURES, however bad the rate
        (3, 0, True),
        (60, 940, False),  # 6 %: not yet sure it is above 5 %
        (80, 920, True),  # 8 %
        (10, 90, True),  # 10 % of 100
        (3, 97, False),
        (0, 10_000, False),
    ],
)
def test_known_cases(failed: int, sent: int, expected: bool) -> None:
    assert _trips(failed, sent) is expected


def test_the_reason_names_the_counts_the_bound_and_the_threshold() -> None:
    reason = tripped(failed=5, sent=5, threshold_percent=FIVE, wave_number=1)
    assert reason is not None
    assert "5 of 10" in reason and "wave 1" in reason and "23.7 %" in reason and "5 %" in reason


def _reference(failures: int, trials: int, z: float = 1.959963984540054) -> float:
    """The Wilson score interval's lower end, written the textbook way."""
    p = failures / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2))
    return centre - half


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_the_bound_is_the_wilson_lower_end_and_never_above_the_observed_rate(
    counts: tuple[int, int],
) -> None:
    failures, trials = counts
    bound = wilson_lower_bound(failures, trials)
    assert bound == pytest.approx(max(0.0, _reference(failures, trials)), abs=1e-12)
    assert 0.0 <= bound <= failures / trials + 1e-12


@given(st.integers(1, 2000), st.integers(0, 2000), st.integers(0, 100))
def test_more_failures_or_a_lower_threshold_never_untrip(
    failed: int, sent: int, threshold: int
) -> None:
    if _trips(failed, sent, Decimal(threshold)):
        assert _trips(failed + 1, sent, Decimal(threshold))
        assert _trips(failed, max(0, sent - 1), Decimal(threshold)) or failed + sent - 1 <= 0
        assert threshold == 0 or _trips(failed, sent, Decimal(threshold - 1))


@given(st.integers(0, MIN_FAILURES - 1), st.integers(0, 10_000))
def test_too_few_failures_never_trip(failed: int, sent: int) -> None:
    assert not _trips(failed, sent, Decimal(0))


def test_more_sends_never_raise_the_bound_exhaustively() -> None:
    """What lets the tick stop counting sends (`sends_that_clear`): for a fixed number of
    failures, the bound does not rise with the sends (beyond floating-point rounding)."""
    for failed in range(300):
        bounds = [wilson_lower_bound(failed, failed + sent) for sent in range(3000)]
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(bounds)), failed


# Thresholds a campaign may have (0–100 %), the edges and fractions included.
THRESHOLDS = [Decimal(t) for t in ("0", "0.0001", "0.5", "1", "2.5", "5", "10", "33.3333")] + [
    Decimal(t) for t in ("50", "99.9999", "100")
]


def _check_clear(failed: int, threshold: Decimal) -> None:
    clear = sends_that_clear(failed=failed, threshold_percent=threshold)
    if clear is None:
        # It trips whatever the sends: as many as a wave could ever hold.
        for sent in (0, 1, 10**3, 10**6, 10**9, 10**12):
            assert _trips(failed, sent, threshold), (failed, threshold, sent)
        return
    assert not _trips(failed, clear, threshold), (failed, threshold, clear)
    assert not _trips(failed, clear + 1, threshold)
    assert not _trips(failed, clear * 2 + 1000, threshold)
    if clear > 0:
        # The fewest: one send fewer trips it, and so does every count below.
        assert _trips(failed, clear - 1, threshold), (failed, threshold, clear)
        assert _trips(failed, 0, threshold)


def test_the_sends_that_clear_are_the_fewest_that_do_exhaustively() -> None:
    for threshold in THRESHOLDS:
        for failed in range(400):
            _check_clear(failed, threshold)


@given(st.integers(0, 10_000_000), st.decimals(0, 100, places=4))
def test_the_sends_that_clear_are_the_fewest_that_do(failed: int, threshold: Decimal) -> None:
    _check_clear(failed, threshold)


def test_the_sends_that_clear_known_cases() -> None:
    # Fewer than three failures, or a threshold of 100 %, never trip: nothing to count.
    assert sends_that_clear(failed=2, threshold_percent=FIVE) == 0
    assert sends_that_clear(failed=500, threshold_percent=Decimal(100)) == 0
    # A threshold of 0 %: three failures trip it whatever the sends.
    assert sends_that_clear(failed=3, threshold_percent=Decimal(0)) is None
    # 80 failures of 1,000 trip 5 % (the module's example); 60 of 1,000 do not.
    assert sends_that_clear(failed=80, threshold_percent=FIVE) > 920  # type: ignore[operator]
    assert sends_that_clear(failed=60, threshold_percent=FIVE) <= 940  # type: ignore[operator]


async def test_five_failures_in_a_ten_device_first_wave_pause_before_wave_two(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 100)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 10, "hold_seconds": 0}, {"percent": 100}]}),
    )
    # Release wave 1 (10 devices), then make 5 of them fail permanently before they are sent.
    deps = await sender_deps(db)
    try:
        await engine.tick(db.sessionmaker, deps.control, db.settings)
    finally:
        await deps.control.watch.aclose()
    async with db.sessionmaker() as session:
        members = list(
            (
                await session.execute(
                    select(Delivery.device_id)
                    .where(Delivery.campaign_id == campaign_id)  # type: ignore[arg-type]
                    .order_by(Delivery.id)  # type: ignore[arg-type]
                )
            ).scalars()
        )
        assert len(members) == 10
        for index, device_id in enumerate(members[:5]):
            await session.execute(
                update(Device)
                .where(Device.id == device_id)  # type: ignore[arg-type]
                .values(token=f"sandbox-fail-{index}")
            )
        await session.commit()
    await run_engine(db, campaign_id)
    assert await campaign_status(db, campaign_id) is CampaignStatus.paused
    rows = await deliveries(db, campaign_id)
    assert len(rows) == 10, "wave 2 was never released"
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json()
    assert view["status_reason"].startswith("guardrail: 5 of 10")
    assert view["waves"][1]["status"] == "pending"
