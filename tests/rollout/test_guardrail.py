"""The failure guardrail's rule (app.rollout.guardrail): a 95 % Wilson lower bound over the
rows decided so far, against the campaign's threshold; and, through the real engine, a small
first wave whose failures are a pattern pauses the campaign before the next wave."""

from __future__ import annotations

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
from app.rollout.guardrail import MIN_FAILURES, tripped, wilson_lower_bound
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
