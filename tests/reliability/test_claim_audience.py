"""The claim re-applies the campaign's audience: a device that left it is never sent.

Rows are queued when their wave is released; a device can leave the audience before a
worker claims its row (its consent tag removed, unregistered, its token found dead by
another campaign). A claim given the campaign's audience predicate leaves such rows
`cancelled` (error `left_audience`, or `device_inactive` for a device no longer active) in
the same transaction and never returns them. Without the predicate the claim behaves as it
always did.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from app.audiences.service import audience_filter
from app.auth.models import Scope
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger
from app.delivery.ledger import Claimed
from app.devices import service as devices_service
from app.devices.models import Device, DeviceStatus, Platform
from app.devices.schemas import DeviceRegistration
from app.rollout import engine
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body, create_and_start, deliveries, sender_deps

pytestmark = pytest.mark.reliability

CONSENT = "marketing-consent"
RULES = {"field": "tags", "op": "contains", "value": CONSENT}


async def consenting_devices(runtime: Runtime, count: int) -> list[uuid.UUID]:
    rows = [
        devices_service.registration_row(
            DeviceRegistration(
                token=f"android-{uuid.uuid4().hex}",
                platform=Platform.android,
                tags=[CONSENT, "news"],
            )
        )
        for _ in range(count)
    ]
    async with unit_of_work(runtime.sessionmaker) as session:
        await devices_service.register_many(session, rows)
    return [r["id"] for r in rows]


async def released_campaign(
    runtime: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> uuid.UUID:
    """A running campaign to the consenting devices, its single wave released (queued)."""
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    body = campaign_body(audience={"rules": RULES}, rollout={"waves": [{"percent": 100}]})
    campaign_id = await create_and_start(client, headers, body)
    deps = await sender_deps(runtime)
    report = await engine.tick(runtime.sessionmaker, deps.control, runtime.settings)
    assert [c for c, _, _ in report.released] == [campaign_id]
    return campaign_id


async def withdraw_consent(runtime: Runtime, device_ids: list[uuid.UUID]) -> None:
    async with unit_of_work(runtime.sessionmaker) as session:
        await session.execute(
            update(Device)
            .where(col(Device.id).in_(device_ids))
            .values(tags=["news"], updated_at=utcnow())
        )


async def claim_all(
    runtime: Runtime, campaign_id: uuid.UUID, *, with_audience: bool, limit: int = 500
) -> list[Claimed]:
    """Claim until nothing is left, the way the send loop does (one claim per batch)."""
    claimed: list[Claimed] = []
    while True:
        now = utcnow()
        async with unit_of_work(runtime.sessionmaker) as session:
            batch = await ledger.claim(
                session,
                campaign_id=campaign_id,
                limit=limit,
                lease_token=uuid.uuid4(),
                lease_until=now + timedelta(seconds=60),
                now=now,
                **({"audience": audience_filter(RULES, now=now)} if with_audience else {}),
            )
        if not batch:
            return claimed
        claimed += batch


async def test_devices_that_left_the_audience_are_cancelled_in_the_claim(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    devices = await consenting_devices(db, 1000)
    campaign_id = await released_campaign(db, client, make_key)
    assert len(await deliveries(db, campaign_id)) == 1000
    left = devices[100:400]
    await withdraw_consent(db, left)
    claimed = await claim_all(db, campaign_id, with_audience=True)
    claimed_ids = {c.device_id for c in claimed}
    assert claimed_ids.isdisjoint(left), "a device that left the audience was claimed"
    assert len(claimed) == 700
    assert claimed_ids == set(devices) - set(left)
    rows = {r.device_id: r for r in await deliveries(db, campaign_id)}
    assert Counter(rows[d].status for d in left) == {"cancelled": 300}
    assert {rows[d].error_code for d in left} == {"left_audience"}
    # Not an attempt, and no lease left behind.
    assert {(rows[d].attempts, rows[d].lease_token) for d in left} == {(0, None)}
    assert Counter(rows[d].status for d in claimed_ids) == {"sending": 700}


async def test_a_device_no_longer_active_is_cancelled_as_inactive(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    devices = await consenting_devices(db, 40)
    campaign_id = await released_campaign(db, client, make_key)
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(Device)
            .where(col(Device.id).in_(devices[:10]))
            .values(status=DeviceStatus.unregistered.value)
        )
    claimed = await claim_all(db, campaign_id, with_audience=True)
    assert {c.device_id for c in claimed} == set(devices[10:])
    rows = {r.device_id: r for r in await deliveries(db, campaign_id)}
    assert {(rows[d].status, rows[d].error_code) for d in devices[:10]} == {
        ("cancelled", "device_inactive")
    }


async def test_a_batch_that_left_entirely_does_not_end_the_claims(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    """A send loop stops at an empty claim: one full batch of leavers must not look like
    the end of the campaign's rows."""
    await consenting_devices(db, 60)
    campaign_id = await released_campaign(db, client, make_key)
    first = sorted(await deliveries(db, campaign_id), key=lambda r: r.id or 0)
    await withdraw_consent(db, [r.device_id for r in first[:25]])
    now = utcnow()
    async with unit_of_work(db.sessionmaker) as session:
        batch = await ledger.claim(
            session,
            campaign_id=campaign_id,
            limit=10,
            lease_token=uuid.uuid4(),
            lease_until=now + timedelta(seconds=60),
            now=now,
            audience=audience_filter(RULES, now=now),
        )
    # The claim went on past the leavers to the next rows that may be sent.
    assert 1 <= len(batch) <= 10
    assert [c.device_id for c in batch] == [r.device_id for r in first[25 : 25 + len(batch)]]
    rows = await deliveries(db, campaign_id)
    assert Counter(r.status for r in rows) == {
        "cancelled": 25,
        "sending": len(batch),
        "queued": 35 - len(batch),
    }


async def test_without_the_predicate_the_claim_is_unchanged(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    devices = await consenting_devices(db, 50)
    campaign_id = await released_campaign(db, client, make_key)
    await withdraw_consent(db, devices[:20])
    claimed = await claim_all(db, campaign_id, with_audience=False)
    assert {c.device_id for c in claimed} == set(devices)


async def test_nothing_is_cancelled_while_the_campaign_cannot_send(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    devices = await consenting_devices(db, 30)
    campaign_id = await released_campaign(db, client, make_key)
    await withdraw_consent(db, devices)
    headers = bearer(await make_key(Scope.campaigns_operate, Scope.campaigns_read))
    paused = await client.post(
        f"/v1/campaigns/{campaign_id}/pause", json={"reason": "look"}, headers=headers
    )
    assert paused.status_code == 200, paused.text
    assert await claim_all(db, campaign_id, with_audience=True) == []
    assert {r.status for r in await deliveries(db, campaign_id)} == {"queued"}
    resumed = await client.post(f"/v1/campaigns/{campaign_id}/resume", headers=headers)
    assert resumed.status_code == 200, resumed.text
    assert await claim_all(db, campaign_id, with_audience=True) == []
    rows = await deliveries(db, campaign_id)
    assert Counter((r.status, r.error_code) for r in rows) == {("cancelled", "left_audience"): 30}
