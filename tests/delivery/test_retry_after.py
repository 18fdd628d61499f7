"""Retry-After from FCM holds back every request from the instant the answer is seen.

Through the FCM protocol fake, the real firebase-admin client, the engine's tick and the
sender, the suite's database and Redis. The evidence is the fake's own request records: no
request may arrive inside a window (answer, answer + Retry-After) opened by an earlier 429.
The fake runs in its own process, as the benchmark runs it: in a thread of this one it shares
the interpreter lock with the client, and when it gets it late it stamps requests the client
wrote before the 429 went out as arriving after it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert, select
from wavecast_tools.bench import stack
from wavecast_tools.bench.stack import request_of
from wavecast_tools.bench.timing import inside_retry_after

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.db.types import utcnow
from app.delivery.sender import pump
from app.devices import service as devices_service
from app.devices.models import Device
from app.devices.schemas import DeviceRegistration
from app.rollout import engine
from app.runtime import Runtime
from app.settings import ProviderMode, Settings
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body, campaign_status, create_and_start, deliveries, sender_deps

DEVICES = 600
RATE = 1_000


@pytest.fixture(scope="module")
def fcm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Fake]:
    with stack.fake("fcm", tmp_path_factory.mktemp("retry-after")) as fake:
        yield fake


async def test_no_request_leaves_inside_a_retry_after_window(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fcm: stack.Fake
) -> None:
    fcm.clear_rules()
    fcm.forget_records()
    settings = db.settings.model_copy(
        update={
            "provider": ProviderMode.real,
            "fcm_credentials": Path(fcm.env["WAVECAST_FCM_CREDENTIALS"]),
            "fcm_endpoint": fcm.env["WAVECAST_FCM_ENDPOINT"],
        }
    )
    now = utcnow()
    rows = [
        devices_service.registration_row(
            DeviceRegistration(token=f"ra-{i}", platform="android"),  # type: ignore[arg-type]
            now,
        )
        for i in range(DEVICES)
    ]
    async with db.sessionmaker() as session:
        # QA phones: outside production a real provider reaches test devices only.
        await session.execute(
            insert(Device.__table__),  # type: ignore[attr-defined]
            [row | {"is_test_device": True} for row in rows],
        )
        await session.commit()
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    # Two send loops share the worker's FCM provider. The first request is refused after
    # 50 ms, as a real provider takes to answer (a call is wholly on the wire before it): the
    # other loop's next call, and the refused call's own later requests, must wait for the
    # Retry-After from the instant the answer is seen, not from when the refused call returns.
    refusal = fcm.add_rule(error="QUOTA_EXCEEDED", count=1, retry_after=1, latency=0.05)
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 100}]}, throttle={"per_second": RATE}),
    )
    await _run_two_pumps(db, campaign_id, settings)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed

    sends = sorted(fcm.records(), key=lambda r: float(r["monotonic"]))
    # Windows open when the fake wrote each 429 (the record's `answered`), as the benchmark
    # reads them: no client can see an answer before it was written.
    requests = [request_of(r) for r in sends]
    assert [r["applied"] for r in fcm.rules() if r["id"] == refusal] == [1]
    assert [r.retry_after for r in requests if r.status == 429] == [1.0]
    inside = inside_retry_after(requests)
    assert inside == [], f"{len(inside)} requests arrived inside a Retry-After window"

    # Every device was accepted exactly once, and a row's attempts are the requests the
    # provider saw for it: rows held back by the block did not spend an attempt.
    accepted = Counter(r["token"] for r in sends if r["status"] == 200)
    assert sorted(accepted) == sorted(f"ra-{i}" for i in range(DEVICES))
    assert set(accepted.values()) == {1}
    seen = Counter(r["token"] for r in sends)
    ledger = await deliveries(db, campaign_id)
    assert {r.status for r in ledger} == {"sent"}
    tokens = {d.id: d.token for d in await _devices(db)}
    assert {tokens[r.device_id]: r.attempts for r in ledger} == dict(seen)


async def _devices(db: Runtime) -> list[Device]:
    async with db.sessionmaker() as session:
        return list((await session.execute(select(Device))).scalars().all())


async def _run_two_pumps(db: Runtime, campaign_id: uuid.UUID, settings: Settings) -> None:
    """Tick and send as one worker with two send loops on the campaign would."""
    deps = await sender_deps(db, settings)
    for _ in range(600):
        report = await engine.tick(db.sessionmaker, deps.control, settings)
        if campaign_id in report.sendable:
            await asyncio.gather(
                pump(deps, campaign_id, budget_seconds=10),
                pump(deps, campaign_id, budget_seconds=10),
            )
        if await campaign_status(db, campaign_id) is CampaignStatus.completed:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"campaign {campaign_id} did not complete")
