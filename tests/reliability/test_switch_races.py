"""The global kill switch against a start or a resume sent at the same moment.

Whichever commits first, the outcome must be one of two: the start (or resume) commits and
the engage pauses the campaign, or the engage commits and the start (or resume) is refused
with 409. A campaign left running under an engaged switch is sent the moment the switch is
released, without anyone resuming it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable

import httpx
from sqlmodel import col, select

from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus
from app.killswitch.models import SWITCH_ID, KillSwitch
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body

TRIALS = 30
LIVE = {CampaignStatus.running, CampaignStatus.scheduled}


async def _keys(make_key: KeyMaker) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    killer = bearer(await make_key(Scope.kill, name="on-call"))
    admin = bearer(await make_key(Scope.admin, name="head of ops"))
    return operator, killer, admin


async def _after(delay: float, call: Awaitable[httpx.Response]) -> httpx.Response:
    await asyncio.sleep(delay)
    return await call


def _delays(trial: int) -> tuple[float, float]:
    """Stagger the two requests by 0-5 ms either way, so the trials cover different
    interleavings of their statements rather than one."""
    step = (trial % 6) * 0.001
    return (step, 0.0) if trial % 2 else (0.0, step)


async def _state(db: Runtime, campaign_id: uuid.UUID) -> tuple[bool, CampaignStatus]:
    async with db.sessionmaker() as session:
        switch = (
            await session.exec(select(KillSwitch).where(col(KillSwitch.id) == SWITCH_ID))
        ).one()
        campaign = (
            await session.exec(select(Campaign).where(col(Campaign.id) == campaign_id))
        ).one()
        return switch.engaged, CampaignStatus(campaign.status)


async def _create(client: httpx.AsyncClient, operator: dict[str, str]) -> uuid.UUID:
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=operator)
    assert created.status_code == 201, created.text
    return uuid.UUID(created.json()["id"])


async def _release(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    released = await client.post(
        "/v1/kill-switch/release", json={"reason": "next trial"}, headers=admin
    )
    assert released.status_code in (200, 409), released.text


async def _race(
    db: Runtime,
    client: httpx.AsyncClient,
    killer: dict[str, str],
    admin: dict[str, str],
    campaign_id: uuid.UUID,
    action: str,
    operator: dict[str, str],
    trial: int,
) -> str | None:
    """Engage ∥ `action`; returns what went wrong, or None."""
    engage_delay, action_delay = _delays(trial)
    engaged, acted = await asyncio.gather(
        _after(
            engage_delay,
            client.post("/v1/kill-switch", json={"reason": f"race {trial}"}, headers=killer),
        ),
        _after(
            action_delay,
            client.post(f"/v1/campaigns/{campaign_id}/{action}", json={}, headers=operator),
        ),
    )
    assert engaged.status_code == 200, engaged.text
    assert acted.status_code in (200, 409), acted.text
    switch_engaged, status = await _state(db, campaign_id)
    problem = None
    if switch_engaged and status in LIVE:
        problem = f"trial {trial}: switch engaged, campaign {status} ({action} {acted.status_code})"
    await _release(client, admin)
    return problem


async def test_engage_racing_start_never_leaves_a_campaign_running(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    operator, killer, admin = await _keys(make_key)
    problems = []
    for trial in range(TRIALS):
        campaign_id = await _create(client, operator)
        problem = await _race(db, client, killer, admin, campaign_id, "start", operator, trial)
        if problem:
            problems.append(problem)
    assert not problems, f"{len(problems)} of {TRIALS} races:\n" + "\n".join(problems)


async def test_engage_racing_resume_never_leaves_a_campaign_running(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    operator, killer, admin = await _keys(make_key)
    problems = []
    for trial in range(TRIALS):
        campaign_id = await _create(client, operator)
        started = await client.post(f"/v1/campaigns/{campaign_id}/start", json={}, headers=operator)
        assert started.status_code == 200, started.text
        paused = await client.post(f"/v1/campaigns/{campaign_id}/pause", json={}, headers=operator)
        assert paused.status_code == 200, paused.text
        problem = await _race(db, client, killer, admin, campaign_id, "resume", operator, trial)
        if problem:
            problems.append(problem)
    assert not problems, f"{len(problems)} of {TRIALS} races:\n" + "\n".join(problems)


async def test_a_start_under_an_engaged_switch_is_refused(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    operator, killer, _ = await _keys(make_key)
    campaign_id = await _create(client, operator)
    engaged = await client.post("/v1/kill-switch", json={"reason": "incident"}, headers=killer)
    assert engaged.status_code == 200
    started = await client.post(f"/v1/campaigns/{campaign_id}/start", json={}, headers=operator)
    assert started.status_code == 409
    assert "kill switch" in started.json()["detail"]
    assert await _state(db, campaign_id) == (True, CampaignStatus.draft)
