"""Outside production a real provider reaches test devices only (the API side): a start
whose audience holds a non-test device is refused with the rule and the count, never
overridable; QA devices are marked in bulk by an admin, audited. The worker's row-by-row
block is tested against the FCM fake in tests/delivery/providers/test_end_to_end.py."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlmodel import col, select

from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.devices.models import Device
from app.main import create_app
from app.runtime import Runtime
from app.settings import Environment, ProviderMode
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body


@pytest.fixture(params=[Environment.development, Environment.staging])
async def real_client(
    db: Runtime, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    settings = db.settings.model_copy(update={"provider": ProviderMode.real, "env": request.param})
    assert settings.test_devices_only
    app = create_app(settings, runtime=dataclasses.replace(db, settings=settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as c:
        yield c


async def _tokens(db: Runtime, *, test: bool) -> list[str]:
    async with db.sessionmaker() as session:
        query = select(Device.token).where(col(Device.is_test_device).is_(test))
        return list((await session.exec(query)).all())


@pytest.mark.parametrize("kind", ["live", "test"])
async def test_a_start_reaching_a_non_test_device_is_refused_until_they_are_marked(
    real_client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, kind: str
) -> None:
    await add_devices(db, 7, test_devices=2)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    body = campaign_body(kind=kind, rollout={"waves": [{"percent": 100}]})
    if kind == "test":
        body["content"] = {"title": "ęśąćż", "body": "test wiadomości push"}
    # The preview and the create advise (QA devices may still be marked before the start).
    preview = await real_client.post("/v1/campaigns/preview", json=body, headers=operator)
    assert preview.status_code == 200, preview.text
    assert preview.json()["guard"]["allowed"] is True
    assert "test_devices_only" in {f["rule"] for f in preview.json()["guard"]["findings"]}
    created = await real_client.post("/v1/campaigns", json=body, headers=operator)
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]

    refused = await real_client.post(
        f"/v1/campaigns/{campaign_id}/start",
        json={"override": {"reason": "the QA lead said so"}} if kind == "live" else None,
        headers=operator,
    )
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["status"] == 422
    assert "reaches test devices only" in problem["detail"]
    assert "5 device(s) not marked as test devices" in problem["detail"]
    assert problem["guard"]["allowed"] is False and problem["guard"]["overridable"] is False
    async with db.sessionmaker() as session:
        campaign = await session.get(Campaign, uuid.UUID(campaign_id))
        assert campaign is not None and campaign.status == "draft"
        refusals = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == "guard.refused"))
        ).all()
    assert len(refusals) == 1

    admin = bearer(await make_key(Scope.admin))
    others = await _tokens(db, test=False)
    marked = await real_client.post(
        "/v1/devices/test-marks",
        json={"tokens": others, "reason": "the QA fleet's phones"},
        headers=admin,
    )
    assert marked.status_code == 200, marked.text
    assert marked.json() == {"matched": 5, "changed": 5}
    started = await real_client.post(f"/v1/campaigns/{campaign_id}/start", headers=operator)
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "running"


async def test_with_the_sandbox_provider_the_rule_only_advises(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 3)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    preview = await client.post("/v1/campaigns/preview", json=campaign_body(), headers=operator)
    assert "test_devices_only" not in {f["rule"] for f in preview.json()["guard"]["findings"]}
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=operator)
    assert created.status_code == 201
    started = await client.post(f"/v1/campaigns/{created.json()['id']}/start", headers=operator)
    assert started.status_code == 200, started.text


async def test_bulk_marking_by_rules_and_unmarking_is_audited_once_per_call(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 6, platform="ios")
    await add_devices(db, 4, platform="android")
    admin = bearer(await make_key(Scope.admin))
    android = {"field": "platform", "op": "eq", "value": "android"}
    marked = await client.post(
        "/v1/devices/test-marks",
        json={"rules": android, "reason": "QA Android phones"},
        headers=admin,
    )
    assert marked.status_code == 200, marked.text
    assert marked.json() == {"matched": 4, "changed": 4}
    again = await client.post(
        "/v1/devices/test-marks", json={"rules": android, "reason": "again"}, headers=admin
    )
    assert again.json() == {"matched": 4, "changed": 0}
    assert len(await _tokens(db, test=True)) == 4

    unmarked = await client.post(
        "/v1/devices/test-marks",
        json={"rules": android, "test_device": False, "reason": "the phones went back"},
        headers=admin,
    )
    assert unmarked.json() == {"matched": 4, "changed": 4}
    assert await _tokens(db, test=True) == []

    async with db.sessionmaker() as session:
        events = (
            await session.exec(
                select(AuditEvent)
                .where(col(AuditEvent.action).like("device.test_%marked_bulk"))
                .order_by(col(AuditEvent.id))
            )
        ).all()
    assert [(e.action, e.after["changed"], e.reason) for e in events] == [
        ("device.test_marked_bulk", 4, "QA Android phones"),
        ("device.test_marked_bulk", 0, "again"),
        ("device.test_unmarked_bulk", 4, "the phones went back"),
    ]
    assert events[0].after["selector"] == {"rules": android}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"reason": "x"}, 422, "exactly one of segment_id, rules or tokens"),
        ({"tokens": ["a"], "rules": {"everyone": True}, "reason": "x"}, 422, "exactly one"),
        ({"tokens": ["a"]}, 422, "reason"),
        ({"tokens": ["a"], "reason": ""}, 422, "reason"),
        ({"rules": {"field": "nope", "op": "eq", "value": 1}, "reason": "x"}, 422, "rules"),
    ],
)
async def test_a_bad_bulk_marking_names_the_problem_and_changes_nothing(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    body: dict[str, object],
    status: int,
    words: str,
) -> None:
    await add_devices(db, 2)
    answer = await client.post(
        "/v1/devices/test-marks", json=body, headers=bearer(await make_key(Scope.admin))
    )
    assert answer.status_code == status, answer.text
    assert words in answer.text
    assert await _tokens(db, test=True) == []


async def test_bulk_marking_needs_the_admin_scope(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    key = await make_key(Scope.devices_write, Scope.campaigns_operate)
    answer = await client.post(
        "/v1/devices/test-marks",
        json={"rules": {"everyone": True}, "reason": "x"},
        headers=bearer(key),
    )
    assert answer.status_code == 403


async def test_a_selector_matching_more_than_a_qa_fleet_is_refused(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.devices import service

    monkeypatch.setattr(service, "MAX_BULK_TEST_MARKS", 5)
    await add_devices(db, 6)
    answer = await client.post(
        "/v1/devices/test-marks",
        json={"rules": {"everyone": True}, "reason": "everyone is QA"},
        headers=bearer(await make_key(Scope.admin)),
    )
    assert answer.status_code == 422
    assert "matches 6 devices; one marking may change at most 5" in answer.text
    assert await _tokens(db, test=True) == []
