"""Provider outages: a 5xx storm and a 429 storm from the FCM protocol fake, through the real
firebase-admin client, the engine's tick and the sender (in this process), the suite's
PostgreSQL and Redis. What the fake recorded is the evidence."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert
from wavecast_tools.fakes.faults import FaultRule
from wavecast_tools.fakes.fcm import FcmFake

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.db.types import utcnow
from app.devices import service as devices_service
from app.devices.models import Device
from app.devices.schemas import DeviceRegistration
from app.rollout.guardrail import MIN_FAILURES
from app.runtime import Runtime
from app.settings import ProviderMode, Settings
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body, campaign_status, create_and_start, deliveries, run_engine

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def fcm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FcmFake, Path]]:
    root = tmp_path_factory.mktemp("outage")
    fake = FcmFake(project_id="wavecast-outage")
    with fake.running_in_thread():
        account = root / "service-account.json"
        fake.create_service_account(account)
        yield fake, account


def fcm_settings(db: Runtime, fcm: tuple[FcmFake, Path], **overrides: object) -> Settings:
    fake, account = fcm
    fake.rulebook.clear()
    fake.store.clear()
    return db.settings.model_copy(
        update={
            "provider": ProviderMode.real,
            "fcm_credentials": account,
            "fcm_endpoint": fake.url,
            **overrides,
        }
    )


async def _android(db: Runtime, n: int) -> None:
    now = utcnow()
    rows = [
        devices_service.registration_row(
            DeviceRegistration(token=f"fcm-{i}", platform="android"),  # type: ignore[arg-type]
            now,
        )
        for i in range(n)
    ]
    async with db.sessionmaker() as session:
        # QA phones: outside production a real provider reaches test devices only.
        await session.execute(
            insert(Device.__table__),  # type: ignore[attr-defined]
            [row | {"is_test_device": True} for row in rows],
        )
        await session.commit()


async def _operator(make_key: KeyMaker) -> dict[str, str]:
    return bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )


async def test_5xx_storm_retries_are_bounded_and_the_guardrail_pauses(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fcm: tuple[FcmFake, Path]
) -> None:
    settings = fcm_settings(db, fcm, max_attempts=2)
    fake = fcm[0]
    await _android(db, 100)
    headers = await _operator(make_key)
    storm = fake.rulebook.add(FaultRule(error="UNAVAILABLE"))
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 20, "hold_seconds": 0}, {"percent": 100}]}),
    )
    await run_engine(db, campaign_id, settings=settings, max_ticks=600)
    assert await campaign_status(db, campaign_id) is CampaignStatus.paused
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json()
    assert view["status_reason"].startswith("guardrail:"), view["status_reason"]
    rows = await deliveries(db, campaign_id)
    assert len(rows) == 20, "the next wave is not released while the storm lasts"
    failed = [r for r in rows if r.status == "failed"]
    # The guardrail trips as soon as the failures are a pattern (app.rollout.guardrail: a
    # confidence bound, at least MIN_FAILURES), before the rest of the wave is decided.
    assert len(failed) >= MIN_FAILURES
    assert {r.status for r in rows} <= {"failed", "retrying"}
    assert {r.error_code for r in failed} == {"retries_exhausted:UNAVAILABLE"}
    during = Counter(r.token for r in fake.store.sends())
    assert max(during.values()) <= settings.max_attempts, "retries are bounded"
    assert storm.applied == sum(during.values())

    # The storm passes; an operator resumes; the rest of the audience is sent, once each.
    fake.rulebook.clear()
    resumed = await client.post(f"/v1/campaigns/{campaign_id}/resume", headers=headers)
    assert resumed.status_code == 200, resumed.text
    await run_engine(db, campaign_id, settings=settings, max_ticks=600)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed
    statuses = await ledger_figures_fcm(db, campaign_id)
    assert statuses == Counter({"sent": 100 - len(failed), "failed": len(failed)})
    requests = Counter(r.token for r in fake.store.sends())
    accepted = Counter(r.token for r in fake.store.sends() if r.status == 200)
    assert all(n == 1 for n in accepted.values()), "no device was sent twice"
    assert sum(accepted.values()) == statuses["sent"], "every row sent was received once"
    lost = 100 - statuses["sent"] - statuses["failed"]
    assert max(requests.values()) <= settings.max_attempts
    print(
        f"\n5xx storm: {storm.applied} requests refused, at most {max(during.values())} "
        f"attempts per device (limit {settings.max_attempts}); guardrail paused wave 1 at "
        f"{len(failed)} failed; after resume {100 - len(failed)} sent, lost {lost}"
    )


async def test_429_storm_honours_retry_after(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fcm: tuple[FcmFake, Path]
) -> None:
    settings = fcm_settings(db, fcm)
    fake = fcm[0]
    await _android(db, 30)
    headers = await _operator(make_key)
    retry_after = 1
    storm = fake.rulebook.add(FaultRule(error="QUOTA_EXCEEDED", count=3, retry_after=retry_after))
    # One device per batch (a batch is a slice of the rate), so every request after a 429
    # is a new decision of the sender's, which Retry-After must hold back.
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 100}]}, throttle={"per_second": 20}),
    )
    await run_engine(db, campaign_id, settings=settings, max_ticks=600)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed
    figures = await ledger_figures_fcm(db, campaign_id)
    assert figures == Counter({"sent": 30})
    sends = sorted(fake.store.sends(), key=lambda r: r.monotonic)
    refused = [r for r in sends if r.status == 429]
    assert len(refused) == storm.applied == 3
    inside = [
        (r.token, round(s.monotonic - r.monotonic, 3))
        for r in refused
        for s in sends
        if r.monotonic < s.monotonic < r.monotonic + retry_after
    ]
    assert inside == [], f"requests inside a Retry-After window: {inside}"
    accepted = Counter(r.token for r in sends if r.status == 200)
    assert sorted(accepted) == sorted(f"fcm-{i}" for i in range(30))
    assert set(accepted.values()) == {1}
    gaps = [
        round(min(s.monotonic for s in sends if s.monotonic > r.monotonic) - r.monotonic, 2)
        for r in refused
    ]
    print(f"\n429 storm: 3 refusals with Retry-After {retry_after}s; next request after {gaps}s")


async def ledger_figures_fcm(db: Runtime, campaign_id: uuid.UUID) -> Counter[str]:
    return Counter(r.status for r in await deliveries(db, campaign_id))
