"""The rollout engine against real PostgreSQL/SQLite and Redis, driven tick by tick."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from decimal import Decimal

import httpx
from sqlalchemy import insert, select

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.db.types import utcnow
from app.delivery import ledger
from app.delivery.models import Delivery, SandboxMessage
from app.delivery.sender import pump
from app.rollout import engine
from app.rollout.planner import reference_waves
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    deliveries,
    run_engine,
    sandbox_count,
    sender_deps,
)


async def operator(make_key: KeyMaker) -> dict[str, str]:
    return bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )


async def test_ten_thousand_devices_in_three_waves(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    ids = await add_devices(db, 10_000)
    headers = await operator(make_key)
    body = campaign_body(
        rollout={"waves": [{"percent": 1}, {"percent": 10}, {"percent": 100}]},
    )
    campaign_id = await create_and_start(client, headers, body)
    await run_engine(db, campaign_id)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed

    rows = await deliveries(db, campaign_id)
    assert len(rows) == 10_000
    assert {r.status for r in rows} == {"sent"}
    assert len({r.device_id for r in rows}) == 10_000
    per_wave = Counter(r.wave for r in rows)
    assert per_wave[0] == math.ceil(0.01 * 10_000)
    assert per_wave[0] + per_wave[1] == math.ceil(0.10 * 10_000)
    assert sum(per_wave.values()) == 10_000
    # The ledger's wave membership is exactly the planner's reference order.
    expected = reference_waves(ids, campaign_id, [Decimal(1), Decimal(10), Decimal(100)])
    by_wave = {w: {r.device_id for r in rows if r.wave <= w} for w in range(3)}
    for wave, members in enumerate(expected):
        assert by_wave[wave] == set(members)
    # The sandbox recorded one message per delivery, no more.
    assert await sandbox_count(db, campaign_id) == 10_000
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json()
    assert [w["sent"] for w in view["waves"]] == [100, 900, 9000]
    assert [w["target_count"] for w in view["waves"]] == [100, 1000, 10000]
    assert all(w["status"] == "finished" for w in view["waves"])
    actions = [
        e["action"]
        for e in (
            await client.get(
                "/v1/audit", params={"subject_id": str(campaign_id), "limit": 50}, headers=headers
            )
        ).json()["items"]
    ]
    assert actions.count("campaign.wave_released") == 3
    assert "campaign.complete" in actions


async def test_holds_keep_the_next_wave_back(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 200)
    headers = await operator(make_key)
    body = campaign_body(
        rollout={"waves": [{"percent": 10, "hold_seconds": 3600}, {"percent": 100}]}
    )
    campaign_id = await create_and_start(client, headers, body)
    # The first wave goes out; the hour-long hold must stop the campaign there.
    deps = await sender_deps(db)
    for _ in range(6):
        report = await engine.tick(db.sessionmaker, deps.control, db.settings)
        if campaign_id in report.sendable:
            await pump(deps, campaign_id, budget_seconds=5)
    rows = await deliveries(db, campaign_id)
    assert len(rows) == 20
    assert {r.wave for r in rows} == {0}
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json()
    assert view["waves"][0]["status"] == "finished"
    assert view["waves"][1]["status"] == "pending"
    assert view["next_wave_at"] is not None
    assert view["status"] == "running"


async def test_new_devices_never_change_an_earlier_wave(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 500)
    headers = await operator(make_key)
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 10, "hold_seconds": 1}, {"percent": 100}]}),
    )
    deps = await sender_deps(db)
    report = await engine.tick(db.sessionmaker, deps.control, db.settings)
    assert campaign_id in report.sendable
    first = {r.device_id for r in await deliveries(db, campaign_id)}
    assert len(first) == 50
    # The audience grows between waves.
    await add_devices(db, 500)
    await run_engine(db, campaign_id)
    rows = await deliveries(db, campaign_id)
    assert {r.device_id for r in rows if r.wave == 0} == first
    assert len(rows) == 1000
    assert Counter(r.status for r in rows) == {"sent": 1000}


async def test_a_test_campaign_never_reaches_a_non_test_device(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    """Even when ledger rows reach the database by another road."""
    ids = await add_devices(db, 20, test_devices=5)
    headers = await operator(make_key)
    body = campaign_body(
        kind="test",
        content={"title": "ęśąćż", "body": "test wiadomości push"},
        audience={"rules": {"field": "is_test_device", "op": "eq", "value": True}},
        rollout={"waves": [{"percent": 60, "hold_seconds": 3600}, {"percent": 100}]},
    )
    campaign_id = await create_and_start(client, headers, body)
    deps = await sender_deps(db)
    await engine.tick(db.sessionmaker, deps.control, db.settings)
    # Wave 1 holds 3 of the 5 test devices. Then someone inserts rows for non-test devices
    # straight into the ledger (in the campaign's month's partition, where claims look).
    async with db.sessionmaker() as session:
        month = await ledger.ledger_month(session, campaign_id)
        await session.execute(
            insert(Delivery.__table__),  # type: ignore[attr-defined]
            [
                {
                    "campaign_id": campaign_id,
                    "device_id": d,
                    "ledger_month": month,
                    "wave": 0,
                    "status": "queued",
                    "attempts": 0,
                    "created_at": _now(),
                    "updated_at": _now(),
                }
                for d in ids[5:]
            ],
        )
        await session.commit()
    await pump(deps, campaign_id, budget_seconds=5)
    rows = {r.device_id: r for r in await deliveries(db, campaign_id)}
    test_rows = [rows[d] for d in ids[:5] if d in rows]
    assert len(test_rows) == 3
    assert {r.status for r in test_rows} == {"sent"}
    # The claim re-applies the audience (test devices only) and stops them first; a non-test
    # device inside a test campaign's audience is blocked row by row instead (the sender's
    # pre-send rule, tests/delivery/test_outcomes.py).
    assert {rows[d].status for d in ids[5:]} == {"cancelled"}
    assert {rows[d].error_code for d in ids[5:]} == {"left_audience"}
    async with db.sessionmaker() as session:
        reached = set(
            (await session.execute(select(SandboxMessage.device_id))).scalars().all()  # type: ignore[call-overload]
        )
    assert reached == {r.device_id for r in test_rows}


def _now() -> datetime:
    return utcnow()


async def test_guardrail_pauses_a_wave_that_fails_and_invalid_tokens_deactivate(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    from app.devices.models import Device

    ids = await add_devices(db, 200)
    async with db.sessionmaker() as session:
        for index, device_id in enumerate(ids[:60]):
            device = await session.get(Device, device_id)
            assert device is not None
            device.token = f"sandbox-fail-{index}" if index < 40 else f"sandbox-invalid-{index}"
            session.add(device)
        await session.commit()
    headers = await operator(make_key)
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await run_engine(db, campaign_id)
    assert await campaign_status(db, campaign_id) is CampaignStatus.paused
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json()
    assert view["status_reason"].startswith("guardrail:")
    assert view["waves"][0]["failed"] == 40
    assert view["waves"][0]["invalid"] == 20
    statuses: Counter[str] = Counter()
    async with db.sessionmaker() as session:
        for device_id in ids[:60]:
            device = await session.get(Device, device_id)
            assert device is not None
            statuses[device.status] += 1
    assert statuses == {"active": 40, "invalid": 20}
    pauses = (
        await client.get("/v1/audit", params={"action": "campaign.auto_pause"}, headers=headers)
    ).json()["items"]
    assert pauses[0]["actor"] == "system"
    assert "guardrail" in pauses[0]["reason"]
