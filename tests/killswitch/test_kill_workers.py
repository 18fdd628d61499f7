"""Stopping campaigns while real worker processes send them."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.control.throttle_math import batch_size_for_rate
from app.delivery.models import SandboxMessage
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    deliveries,
    sandbox_count,
    wait_for,
    worker_processes,
    workers_alive,
)

pytestmark = pytest.mark.slow


async def keys(make_key: KeyMaker) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    killer = bearer(await make_key(Scope.kill, name="on-call"))
    admin = bearer(await make_key(Scope.admin, name="head of ops"))
    return operator, killer, admin


async def test_kill_mid_wave_stops_every_worker_at_once(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 4000)
    operator, killer, _ = await keys(make_key)
    body = campaign_body(rollout={"waves": [{"percent": 100}]}, throttle={"per_second": 400})
    with worker_processes(db.settings, count=2):
        await workers_alive(db, 2)
        campaign_id = await create_and_start(client, operator, body)
        await wait_for(lambda: _at_least(db, campaign_id, 400), within=60)
        answer = await client.post(
            f"/v1/campaigns/{campaign_id}/kill", json={"reason": "wrong segment"}, headers=killer
        )
        answered_at = time.time()
        at_answer = await sandbox_count(db, campaign_id)
        assert answer.status_code == 200, answer.text
        assert answer.json()["in_flight_at_answer"] == 0
        await asyncio.sleep(2.0)
        later = await sandbox_count(db, campaign_id)
    assert later == at_answer, f"{later - at_answer} sends after the kill answered"
    async with db.sessionmaker() as session:
        last = (
            await session.execute(
                select(func.max(SandboxMessage.sent_at)).where(  # type: ignore[arg-type]
                    SandboxMessage.campaign_id == campaign_id  # type: ignore[arg-type]
                )
            )
        ).scalar_one()
    assert last.timestamp() <= answered_at
    statuses = Counter(r.status for r in await deliveries(db, campaign_id))
    assert statuses["sent"] == at_answer
    assert statuses["sent"] + statuses["cancelled"] == 4000
    assert set(statuses) == {"sent", "cancelled"}
    assert await campaign_status(db, campaign_id) is CampaignStatus.killed
    kill_events = (
        await client.get("/v1/audit", params={"action": "campaign.kill"}, headers=operator)
    ).json()["items"]
    assert kill_events[0]["reason"] == "wrong segment"
    assert kill_events[0]["actor"].endswith("(on-call)")
    print(
        f"\nkill: sandbox recorded {at_answer} sends before the answer, "
        f"{later - at_answer} after; {statuses['cancelled']} queued rows cancelled"
    )


async def test_global_switch_stops_everything_and_release_leaves_it_paused(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 3000)
    operator, killer, admin = await keys(make_key)
    slow = campaign_body(rollout={"waves": [{"percent": 100}]}, throttle={"per_second": 200})
    with worker_processes(db.settings, count=2):
        first = await create_and_start(client, operator, slow)
        second = await create_and_start(client, operator, {**slow, "name": "second"})
        await wait_for(lambda: _at_least(db, second, 100), within=60)
        engaged = await client.post(
            "/v1/kill-switch", json={"reason": "app is down"}, headers=killer
        )
        assert engaged.status_code == 200, engaged.text
        assert engaged.json()["engaged"] is True
        assert engaged.json()["paused_campaigns"] == 2
        counts = [await sandbox_count(db, c) for c in (first, second)]
        await asyncio.sleep(1.5)
        assert [await sandbox_count(db, c) for c in (first, second)] == counts
        for campaign in (first, second):
            assert await campaign_status(db, campaign) is CampaignStatus.paused
        refused = await client.post(f"/v1/campaigns/{first}/resume", headers=operator)
        assert refused.status_code == 409
        assert (
            await client.post("/v1/kill-switch/release", json={"reason": "x"}, headers=killer)
        ).status_code == 403
        released = await client.post(
            "/v1/kill-switch/release", json={"reason": "incident over"}, headers=admin
        )
        assert released.status_code == 200
        assert released.json()["engaged"] is False
        await asyncio.sleep(1.5)
        assert [await sandbox_count(db, c) for c in (first, second)] == counts
        assert await campaign_status(db, first) is CampaignStatus.paused
        resumed = await client.post(f"/v1/campaigns/{first}/resume", headers=operator)
        assert resumed.status_code == 200
        await wait_for(lambda: _at_least(db, first, counts[0] + 50), within=30)
        assert await sandbox_count(db, second) == counts[1]
    actions = [
        e["action"]
        for e in (
            await client.get("/v1/audit", params={"subject_type": "kill_switch"}, headers=operator)
        ).json()["items"]
    ]
    assert actions == ["kill_switch.released", "kill_switch.engaged"]


async def test_sigkill_mid_chunk_loses_nothing_and_resends_nothing_sent(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 2000)
    operator, _, _ = await keys(make_key)
    body = campaign_body(rollout={"waves": [{"percent": 100}]}, throttle={"per_second": 500})
    with worker_processes(db.settings, count=1) as [victim]:
        campaign_id = await create_and_start(client, operator, body)
        await wait_for(lambda: _at_least(db, campaign_id, 300), within=60)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    sent_before = {r.id for r in await deliveries(db, campaign_id) if r.status == "sent"}
    assert sent_before
    started = time.monotonic()
    with worker_processes(db.settings, count=1):
        await wait_for(lambda: _status_is(db, campaign_id, CampaignStatus.completed), within=90)
    recovery = time.monotonic() - started
    rows = await deliveries(db, campaign_id)
    assert len(rows) == 2000
    assert Counter(r.status for r in rows) == {"sent": 2000}
    async with db.sessionmaker() as session:
        per_delivery = Counter(
            (
                await session.execute(
                    select(SandboxMessage.delivery_id).where(  # type: ignore[call-overload]
                        SandboxMessage.campaign_id == campaign_id  # type: ignore[arg-type]
                    )
                )
            )
            .scalars()
            .all()
        )
    assert set(per_delivery) == {r.id for r in rows}
    assert all(per_delivery[d] == 1 for d in sent_before), "a row already sent was sent again"
    duplicates = sum(n - 1 for n in per_delivery.values())
    assert duplicates <= 500  # at most one claimed batch was on the wire at the kill
    print(
        f"\nSIGKILL: {len(sent_before)} sent before the kill, {duplicates} duplicates, "
        f"recovered in {recovery:.1f}s"
    )


async def test_two_workers_share_one_campaign_and_its_throttle(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 2500)
    operator, _, _ = await keys(make_key)
    rate = 500
    body = campaign_body(rollout={"waves": [{"percent": 100}]}, throttle={"per_second": rate})
    with worker_processes(db.settings, count=2):
        await workers_alive(db, 2)
        campaign_id = await create_and_start(client, operator, body)
        await wait_for(lambda: _status_is(db, campaign_id, CampaignStatus.completed), within=90)
    async with db.sessionmaker() as session:
        rows = (
            await session.execute(
                select(
                    SandboxMessage.delivery_id, SandboxMessage.sent_at, SandboxMessage.worker
                ).where(SandboxMessage.campaign_id == campaign_id)  # type: ignore[call-overload]  # type: ignore[arg-type]
            )
        ).all()
    assert len(rows) == 2500
    assert len({r.delivery_id for r in rows}) == 2500
    assert len({r.worker for r in rows}) == 2, "both workers should have sent"
    times = sorted(r.sent_at for r in rows)
    worst = 0
    start = 0
    for end in range(len(times)):
        while times[end] - times[start] >= timedelta(seconds=1):
            start += 1
        worst = max(worst, end - start + 1)
    # The throttle schedules batches at the rate (its windows are exact: tests/delivery/
    # test_throttle.py); a send happens when its process wakes up, and a process woken late
    # by a loaded machine can land one batch in the next second. The strict per-window target
    # (1.05·R) is measured by `wavecast bench throttle`; here, a late batch per worker at most.
    late = 2 * batch_size_for_rate(rate)
    assert worst <= rate * 1.05 + late, f"{worst} sends in one second at a rate of {rate}"
    mean = (len(times) - 1) / (times[-1] - times[0]).total_seconds()
    assert mean <= rate * 1.05, f"{mean:.0f} sends/s on average at a rate of {rate}"
    print(f"\ntwo workers at {rate}/s: busiest 1-second window {worst}, mean {mean:.0f}/s")


async def _at_least(db: Runtime, campaign_id: object, n: int) -> bool:
    return await sandbox_count(db, campaign_id) >= n  # type: ignore[arg-type]


async def _status_is(db: Runtime, campaign_id: object, status: CampaignStatus) -> bool:
    return await campaign_status(db, campaign_id) is status  # type: ignore[arg-type]
