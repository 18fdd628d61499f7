"""A campaign through the API, the engine and the sender into the FCM and APNs fakes, with
the real firebase-admin and aioapns clients: what the fakes received is the ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import insert

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.db.types import utcnow
from app.devices import service as devices_service
from app.devices.models import Device
from app.devices.schemas import DeviceRegistration
from app.fakes.apns import ApnsFake, generate_apns_key, make_device_token
from app.fakes.fcm import FcmFake
from app.fakes.tls import ensure_tls_files
from app.runtime import Runtime
from app.settings import ProviderMode
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


async def test_campaign_reaches_both_providers_exactly_as_the_ledger_says(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    fcm, sandbox, production = fakes["fcm"], fakes["sandbox"], fakes["production"]
    assert isinstance(fcm, FcmFake)
    assert isinstance(sandbox, ApnsFake) and isinstance(production, ApnsFake)
    key = fakes["key"]
    settings = db.settings.model_copy(
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
            [devices_service.registration_row(r, now) for r in registrations],
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
