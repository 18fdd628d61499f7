"""A batch's admission in one round trip (app/control/admit.lua), on a real Redis: nothing is
reserved and no permit taken behind a closed grant, an unknown or paused rate, or a
provider's Retry-After block; the reservation charges every scope at once, sized by the
tightest; the permit is taken only for sends due within the lead, and a stop waits for it."""

from __future__ import annotations

import uuid

import pytest

from app.control.gate import GateClosed, Refusal
from app.control.plane import Control, provider_scope, throttle_scope
from app.control.throttle import RatePaused, RateUnknown
from app.control.throttle_math import batch_size_for_rate
from app.runtime import Runtime

PERMIT_SECONDS = 3.0


async def _ready(control: Control, campaign_id: uuid.UUID, rate: float, cap: float) -> list[str]:
    await control.gate.set_global(True, 1)
    await control.gate.set_campaign(campaign_id, True, 1)
    scopes = [throttle_scope(campaign_id), provider_scope("apns")]
    await control.throttle.set_rate(scopes[0], rate)
    await control.throttle.set_rate(scopes[1], cap)
    return scopes


async def _tats(db: Runtime, scopes: list[str]) -> list[bool]:
    return [bool(await db.redis.exists(f"wavecast:throttle:{scope}:tat")) for scope in scopes]


async def test_an_admission_reserves_on_every_scope_and_takes_the_permit(db: Runtime) -> None:
    control, campaign_id = Control(db.redis), uuid.uuid4()
    scopes = await _ready(control, campaign_id, rate=100_000.0, cap=9_700.0)
    admission = await control.admit(
        campaign_id, scopes, 500, max_batch=500, lead=0.2, permit_seconds=PERMIT_SECONDS
    )
    # Sized by the tightest scope (the provider's cap), not by the campaign's rate.
    assert admission.grant.n == batch_size_for_rate(9_700.0) == 388
    assert admission.grant.wait == 0.0
    assert admission.rate == 100_000.0
    assert admission.permit is not None
    assert await control.gate.in_flight(campaign_id) == 1
    assert await _tats(db, scopes) == [True, True]
    await control.gate.release(campaign_id, admission.permit)
    assert await control.gate.in_flight(campaign_id) == 0


async def test_sends_due_after_the_lead_are_reserved_without_a_permit(db: Runtime) -> None:
    control, campaign_id = Control(db.redis), uuid.uuid4()
    # 100/s: batches of 4, each 40 ms after the one before.
    scopes = await _ready(control, campaign_id, rate=100.0, cap=9_700.0)
    waits = []
    for _ in range(4):
        admission = await control.admit(
            campaign_id, scopes, 4, max_batch=500, lead=0.05, permit_seconds=PERMIT_SECONDS
        )
        assert admission.grant.n == 4
        waits.append(admission.grant.wait)
        if admission.permit is not None:
            await control.gate.release(campaign_id, admission.permit)
        else:
            assert admission.grant.wait > 0.05
    assert waits[0] == 0.0 and waits[-1] > 0.1
    assert await control.gate.in_flight(campaign_id) == 0


@pytest.mark.parametrize("stopped", ["campaign", "everything"])
async def test_a_closed_grant_admits_nothing(db: Runtime, stopped: str) -> None:
    control, campaign_id = Control(db.redis), uuid.uuid4()
    scopes = await _ready(control, campaign_id, rate=1_000.0, cap=9_700.0)
    if stopped == "campaign":
        await control.gate.set_campaign(campaign_id, False, 2)
    else:
        await control.gate.set_global(False, 2)
    with pytest.raises(GateClosed) as closed:
        await control.admit(
            campaign_id, scopes, 10, max_batch=500, lead=0.2, permit_seconds=PERMIT_SECONDS
        )
    expected = Refusal.campaign_closed if stopped == "campaign" else Refusal.global_closed
    assert closed.value.refusal is expected
    assert await _tats(db, scopes) == [False, False]
    assert await control.gate.in_flight(campaign_id) == 0


async def test_grants_lost_with_redis_admit_nothing(db: Runtime) -> None:
    control, campaign_id = Control(db.redis), uuid.uuid4()
    scopes = await _ready(control, campaign_id, rate=1_000.0, cap=9_700.0)
    await db.redis.flushdb()
    await control.throttle.set_rate(scopes[0], 1_000.0)
    await control.throttle.set_rate(scopes[1], 9_700.0)
    with pytest.raises(GateClosed):
        await control.admit(
            campaign_id, scopes, 10, max_batch=500, lead=0.2, permit_seconds=PERMIT_SECONDS
        )
    assert await control.gate.in_flight(campaign_id) == 0


async def test_an_unknown_or_paused_rate_admits_nothing(db: Runtime) -> None:
    control, campaign_id = Control(db.redis), uuid.uuid4()
    scopes = await _ready(control, campaign_id, rate=1_000.0, cap=9_700.0)
    await control.throttle.forget(scopes[1])
    with pytest.raises(RateUnknown) as unknown:
        await control.admit(
            campaign_id, scopes, 10, max_batch=500, lead=0.2, permit_seconds=PERMIT_SECONDS
        )
    assert unknown.value.scopes == (scopes[1],)
    await control.throttle.set_rate(scopes[1], 9_700.0)
    await control.throttle.set_rate(scopes[0], 0.0)
    with pytest.raises(RatePaused):
        await control.admit(
            campaign_id, scopes, 10, max_batch=500, lead=0.2, permit_seconds=PERMIT_SECONDS
        )
    assert await _tats(db, scopes) == [False, False]
    assert await control.gate.in_flight(campaign_id) == 0


async def test_a_provider_block_admits_nothing_until_it_ends(db: Runtime) -> None:
    control, campaign_id = Control(db.redis), uuid.uuid4()
    scopes = await _ready(control, campaign_id, rate=1_000.0, cap=9_700.0)
    await control.throttle.block_until(scopes[1], 2.0)
    admission = await control.admit(
        campaign_id, scopes, 10, max_batch=500, lead=0.2, permit_seconds=PERMIT_SECONDS
    )
    assert admission.grant.n == 0 and 1.5 < admission.grant.wait <= 2.0
    assert admission.permit is None
    assert await _tats(db, scopes) == [False, False]
    assert await control.gate.in_flight(campaign_id) == 0


async def test_a_stop_waits_for_a_permit_taken_by_an_admission(db: Runtime) -> None:
    control, campaign_id = Control(db.redis), uuid.uuid4()
    scopes = await _ready(control, campaign_id, rate=1_000.0, cap=9_700.0)
    admission = await control.admit(
        campaign_id, scopes, 10, max_batch=500, lead=0.2, permit_seconds=PERMIT_SECONDS
    )
    assert admission.permit is not None
    await control.gate.set_campaign(campaign_id, False, 2)
    assert await control.gate.drain(campaign_id, within=0.2) == 1
    await control.gate.release(campaign_id, admission.permit)
    assert await control.gate.drain(campaign_id, within=0.2) == 0
