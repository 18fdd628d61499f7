"""The environment guard as the API applies it in production."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.auth.models import Scope
from app.main import create_app
from app.runtime import Runtime
from app.settings import Environment
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body

STAGED = {"waves": [{"percent": 1, "hold_seconds": 600}, {"percent": 100}]}
INCIDENT = {"title": "ęśąćż", "body": "test wiadomości push"}


@pytest.fixture
async def prod(db: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The API as a production deployment runs it (stores are the test ones)."""
    settings = db.settings.model_copy(update={"env": Environment.production})
    runtime = Runtime(settings, db.engine, db.sessionmaker, db.redis)
    app = create_app(settings, runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c:
        yield c


async def test_the_incident_is_refused_with_reasons(
    prod: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write))
    answer = await prod.post(
        "/v1/campaigns", json=campaign_body(content=INCIDENT, rollout=STAGED), headers=headers
    )
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["title"] == "Refused by the environment guard"
    fields = {e["field"] for e in problem["errors"]}
    assert {"content.title", "content.body"} <= fields
    assert problem["guard"]["overridable"] is True
    assert "diacritic" in problem["detail"]
    reader = bearer(await make_key(Scope.campaigns_read))
    refusals = (
        await prod.get("/v1/audit", params={"action": "guard.refused"}, headers=reader)
    ).json()["items"]
    assert len(refusals) == 1
    assert refusals[0]["reason"] == "create refused by the environment guard"
    assert refusals[0]["actor"].startswith("key:")
    assert {f["field"] for f in refusals[0]["after"]["findings"]} >= {"content.title"}
    campaigns = (await prod.get("/v1/campaigns", headers=reader)).json()["items"]
    assert campaigns == []


async def test_override_needs_operate_scope_and_is_audited(
    prod: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    body = campaign_body(
        content=INCIDENT,
        rollout=STAGED,
        override={"reason": "Polish keyboard QA for the new font, approved by J. Nowak"},
    )
    writer = bearer(await make_key(Scope.campaigns_write))
    assert (await prod.post("/v1/campaigns", json=body, headers=writer)).status_code == 403
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    created = await prod.post("/v1/campaigns", json=body, headers=operator)
    assert created.status_code == 201, created.text
    assert created.json()["guard_override_reason"].startswith("Polish keyboard QA")
    events = (
        await prod.get("/v1/audit", params={"action": "guard.overridden"}, headers=operator)
    ).json()["items"]
    assert len(events) == 1
    assert events[0]["subject_id"] == created.json()["id"]
    assert events[0]["reason"].startswith("Polish keyboard QA")


async def test_production_requires_staging(prod: httpx.AsyncClient, make_key: KeyMaker) -> None:
    headers = bearer(await make_key(Scope.campaigns_write))
    one_wave = await prod.post(
        "/v1/campaigns",
        json=campaign_body(rollout={"waves": [{"percent": 100}]}),
        headers=headers,
    )
    assert one_wave.status_code == 422
    assert one_wave.json()["guard"]["overridable"] is False
    big_first = await prod.post(
        "/v1/campaigns",
        json=campaign_body(
            rollout={"waves": [{"percent": 50, "hold_seconds": 600}, {"percent": 100}]}
        ),
        headers=headers,
    )
    assert big_first.status_code == 422
    assert any(e["field"] == "rollout.waves[0].percent" for e in big_first.json()["errors"])
    short_hold = await prod.post(
        "/v1/campaigns",
        json=campaign_body(
            rollout={"waves": [{"percent": 1, "hold_seconds": 60}, {"percent": 100}]}
        ),
        headers=headers,
    )
    assert short_hold.status_code == 422
    assert any(e["field"] == "rollout.waves[0].hold_seconds" for e in short_hold.json()["errors"])
    ok = await prod.post("/v1/campaigns", json=campaign_body(rollout=STAGED), headers=headers)
    assert ok.status_code == 201


async def test_test_campaign_with_a_real_customer_is_refused(
    prod: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 10, test_devices=3)
    headers = bearer(await make_key(Scope.campaigns_write))
    everyone = await prod.post(
        "/v1/campaigns",
        json=campaign_body(kind="test", content=INCIDENT, rollout={"waves": [{"percent": 100}]}),
        headers=headers,
    )
    assert everyone.status_code == 422
    assert "7 device(s) not marked as test devices" in everyone.json()["detail"]
    only_test = await prod.post(
        "/v1/campaigns",
        json=campaign_body(
            kind="test",
            content=INCIDENT,
            rollout={"waves": [{"percent": 100}]},
            audience={"rules": {"field": "is_test_device", "op": "eq", "value": True}},
        ),
        headers=headers,
    )
    assert only_test.status_code == 201, only_test.text


async def test_outside_production_the_guard_reports_without_blocking(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write))
    preview = await client.post(
        "/v1/campaigns/preview", json=campaign_body(content=INCIDENT), headers=headers
    )
    assert preview.status_code == 200
    verdict = preview.json()["guard"]
    assert verdict["allowed"] is True
    assert {f["field"] for f in verdict["findings"]} >= {"content.title", "content.body"}
