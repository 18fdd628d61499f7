"""A campaign through the API, the engine and the sender into the FCM and APNs fakes, with
the real firebase-admin and aioapns clients: what the fakes received is the ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from wavecast_tools.fakes.apns import ApnsFake, generate_apns_key, make_device_token
from wavecast_tools.fakes.faults import FaultRule
from wavecast_tools.fakes.fcm import FcmFake
from wavecast_tools.fakes.tls import ensure_tls_files

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.db.types import utcnow
from app.devices import service as devices_service
from app.devices.models import Device
from app.devices.schemas import DeviceRegistration
from app.runtime import Runtime
from app.settings import ProviderMode, Settings
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body, campaign_status, create_and_start, deliveries, run_engine

TOPIC = "com.example.wavecast"


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("e2e")
    tls = ensure_tls_files(root / "tls")
    key = generate_apns_key(root)
    fcm = FcmFake(project_id="wavecast-e2e")
    sandbox = ApnsFake(tls=tls, environment="sandbox", topics=[TOPIC], keys=[key])
    production = ApnsFake(tls=tls, environment="production", topics=[TOPIC], keys=[key])
    with fcm.running_in_thread(), sandbox.running_in_thread(), production.running_in_thread():
        account = root / "service-account.json"
        fcm.create_service_account(account)
        yield {
            "fcm": fcm,
            "sandbox": sandbox,
            "production": production,
            "key": key,
            "tls": tls,
            "account": account,
        }


def real_settings(db: Runtime, fakes: dict[str, object]) -> Settings:
    fcm, sandbox, production = fakes["fcm"], fakes["sandbox"], fakes["production"]
    assert isinstance(fcm, FcmFake)
    assert isinstance(sandbox, ApnsFake) and isinstance(production, ApnsFake)
    for fake in (fcm, sandbox, production):
        fake.rulebook.clear()
        fake.store.clear()
    key = fakes["key"]
    return db.settings.model_copy(
        update={
            "provider": ProviderMode.real,
            "fcm_credentials": fakes["account"],
            "fcm_endpoint": fcm.url,
            "apns_key": key.path,  # type: ignore[attr-defined]
            "apns_key_id": key.key_id,  # type: ignore[attr-defined]
            "apns_team_id": key.team_id,  # type: ignore[attr-defined]
            "apns_topic": TOPIC,
            "apns_sandbox_url": sandbox.url,
            "apns_production_url": production.url,
            "apns_ca_file": fakes["tls"].ca_file,  # type: ignore[attr-defined]
        }
    )


async def test_campaign_reaches_both_providers_exactly_as_the_ledger_says(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    settings = real_settings(db, fakes)
    fcm, sandbox, production = fakes["fcm"], fakes["sandbox"], fakes["production"]
    assert isinstance(fcm, FcmFake)
    assert isinstance(sandbox, ApnsFake) and isinstance(production, ApnsFake)
    now = utcnow()
    registrations = (
        [
            DeviceRegistration(token=f"fcm-{i}", platform="android", locale="pl-PL")  # type: ignore[arg-type]
            for i in range(30)
        ]
        + [
            DeviceRegistration(
                token=make_device_token("production", i),
                platform="ios",  # type: ignore[arg-type]
                apns_environment="production",
            )
            for i in range(20)
        ]  # type: ignore[arg-type]
        + [
            DeviceRegistration(
                token=make_device_token("sandbox", i),
                platform="ios",  # type: ignore[arg-type]
                apns_environment="sandbox",
            )
            for i in range(10)
        ]  # type: ignore[arg-type]
    )
    async with db.sessionmaker() as session:
        await session.execute(
            insert(Device.__table__),  # type: ignore[attr-defined]
            [_qa(devices_service.registration_row(r, now)) for r in registrations],
        )
        await session.commit()

    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    body = campaign_body(
        content={
            "title": "Your statement is ready",
            "body": "Log in to see it.",
            "locales": {"pl": {"title": "Wyciąg gotowy", "body": "Zaloguj się."}},
        },
        rollout={"waves": [{"percent": 10}, {"percent": 100}]},
    )
    campaign_id = await create_and_start(client, headers, body)
    await run_engine(db, campaign_id, settings=settings)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed

    rows = await deliveries(db, campaign_id)
    assert len(rows) == 60
    assert {r.status for r in rows} == {"sent"}
    received = {
        "fcm": sorted(r.token for r in fcm.records() if r.endpoint == "send"),
        "production": sorted(r.token for r in production.records() if r.endpoint == "send"),
        "sandbox": sorted(r.token for r in sandbox.records() if r.endpoint == "send"),
    }
    by_token = {r.token: r for r in registrations}
    assert received["fcm"] == sorted(t for t, r in by_token.items() if r.platform == "android")
    assert received["production"] == sorted(
        t for t, r in by_token.items() if r.apns_environment == "production"
    )
    assert received["sandbox"] == sorted(
        t for t, r in by_token.items() if r.apns_environment == "sandbox"
    )
    assert {r.provider for r in rows} == {"fcm", "apns"}
    polish = json.loads(next(r for r in fcm.records() if r.endpoint == "send").body)
    assert polish["message"]["notification"]["title"] == "Wyciąg gotowy"


def _qa(row: dict[str, Any]) -> dict[str, Any]:
    """A QA phone: outside production a real provider reaches test devices only."""
    return row | {"is_test_device": True}


async def _seed(db: Runtime, registrations: list[DeviceRegistration]) -> None:
    now = utcnow()
    async with db.sessionmaker() as session:
        await session.execute(
            insert(Device.__table__),  # type: ignore[attr-defined]
            [_qa(devices_service.registration_row(r, now)) for r in registrations],
        )
        await session.commit()


def _android(n: int) -> list[DeviceRegistration]:
    return [DeviceRegistration(token=f"fcm-{i}", platform="android") for i in range(n)]  # type: ignore[arg-type]


async def test_sender_mismatch_halts_the_campaign_and_loses_nothing(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    settings = real_settings(db, fakes)
    fcm = fakes["fcm"]
    assert isinstance(fcm, FcmFake)
    fcm.rulebook.add(FaultRule(error="SENDER_ID_MISMATCH", token_prefix="fcm-"))
    await _seed(db, _android(20))
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await run_engine(db, campaign_id, settings=settings)
    assert await campaign_status(db, campaign_id) is CampaignStatus.paused
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json()
    assert "SENDER_ID_MISMATCH" in view["status_reason"]
    rows = await deliveries(db, campaign_id)
    assert len(rows) == 20
    assert {r.status for r in rows} == {"queued"}, "halted rows wait for the fix, not lost"
    assert all(r.attempts == 0 for r in rows)


async def test_quota_exceeded_is_retried_after_retry_after_and_sent_once(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    settings = real_settings(db, fakes)
    fcm, production = fakes["fcm"], fakes["production"]
    assert isinstance(fcm, FcmFake) and isinstance(production, ApnsFake)
    fcm.rulebook.add(FaultRule(error="QUOTA_EXCEEDED", count=5, retry_after=1))
    gone = make_device_token("production", "gone")
    production.rulebook.add(FaultRule(error="Unregistered", token=gone))
    await _seed(
        db,
        [
            *_android(20),
            DeviceRegistration(token=gone, platform="ios", apns_environment="production"),
        ],
    )  # type: ignore[arg-type]
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await run_engine(db, campaign_id, settings=settings, max_ticks=400)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed
    rows = {r.device_id: r for r in await deliveries(db, campaign_id)}
    statuses = sorted(r.status for r in rows.values())
    assert statuses == ["invalid_token"] + ["sent"] * 20
    sends = [r for r in fcm.records() if r.endpoint == "send"]
    refused = [r for r in sends if r.status == 429]
    assert len(refused) == 5
    accepted = [r for r in sends if r.status == 200]
    assert sorted(r.token for r in accepted) == sorted(f"fcm-{i}" for i in range(20))
    last_refusal = max(r.monotonic for r in refused)
    retried = [r for r in accepted if r.token in {x.token for x in refused}]
    assert retried and min(r.monotonic for r in retried) >= last_refusal + 0.9
    async with db.sessionmaker() as session:
        dead = (
            await session.execute(
                select(Device.status).where(Device.token == gone)  # type: ignore[arg-type]
            )
        ).scalar_one()
    assert dead == "invalid"


async def test_outside_production_the_worker_sends_only_to_test_devices(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    """The API's refusal at start is one road; rows that reach the ledger by another (here: a
    start under the sandbox provider, then a worker with the real one) are blocked row by row,
    and the provider never sees them."""
    settings = real_settings(db, fakes)
    assert settings.test_devices_only
    fcm = fakes["fcm"]
    assert isinstance(fcm, FcmFake)
    now = utcnow()
    customers = [
        devices_service.registration_row(
            DeviceRegistration(token=f"customer-{i}", platform="android"),  # type: ignore[arg-type]
            now,
        )
        for i in range(12)
    ]
    async with db.sessionmaker() as session:
        await session.execute(insert(Device.__table__), customers)  # type: ignore[attr-defined]
        await session.commit()
    await _seed(db, _android(4))
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await run_engine(db, campaign_id, settings=settings)
    rows = await deliveries(db, campaign_id)
    assert sorted(r.status for r in rows) == ["blocked"] * 12 + ["sent"] * 4
    assert {r.error_code for r in rows if r.status == "blocked"} == {"not_a_test_device"}
    received = {r.token for r in fcm.records() if r.endpoint == "send"}
    assert received == {f"fcm-{i}" for i in range(4)}


async def test_an_apns_410_deactivates_only_tokens_registered_before_its_timestamp(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    """Apple's 410 carries when it last knew the token to be invalid. A device whose app
    registered the token again after that instant keeps it; one registered before is
    deactivated; a 410 without a usable timestamp deactivates."""
    settings = real_settings(db, fakes)
    production = fakes["production"]
    assert isinstance(production, ApnsFake)
    stale, renewed, undated = (make_device_token("production", n) for n in ("a", "b", "c"))
    now = utcnow()
    hour_ago = int((now - timedelta(hours=1)).timestamp() * 1000)
    production.rulebook.add(FaultRule(error="Unregistered", token=stale))
    production.rulebook.add(FaultRule(error="Unregistered", token=renewed, invalid_at_ms=hour_ago))
    production.rulebook.add(FaultRule(error="Unregistered", token=undated, invalid_at_ms=0))
    rows = [
        devices_service.registration_row(
            DeviceRegistration(token=token, platform="ios", apns_environment="production"),  # type: ignore[arg-type]
            now - timedelta(days=2) if token == stale else now,
        )
        for token in (stale, renewed, undated)
    ]
    async with db.sessionmaker() as session:
        await session.execute(insert(Device.__table__), [_qa(r) for r in rows])  # type: ignore[attr-defined]
        await session.commit()
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await run_engine(db, campaign_id, settings=settings)
    assert {r.status for r in await deliveries(db, campaign_id)} == {"invalid_token"}
    async with db.sessionmaker() as session:
        status = dict(
            (await session.execute(select(Device.token, Device.status))).all()  # type: ignore[call-overload]
        )
    # The stale device's 410 is dated now (after its registration two days ago).
    assert status == {stale: "invalid", renewed: "active", undated: "invalid"}
