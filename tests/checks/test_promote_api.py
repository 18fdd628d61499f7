"""Manual hold controls: promote (skip the rest of a hold; the checks must still have passed
unless overridden) and extend-hold, through the API and the real engine, audited."""

from __future__ import annotations

import uuid

import httpx
from sqlmodel import col, select

from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.runtime import Runtime
from tests.checks.local_server import LocalServer
from tests.checks.support import drive, waves_of
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start

OPERATOR = (Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)


async def _holding(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> tuple[uuid.UUID, dict[str, str]]:
    """A campaign whose first wave is sent and finished, holding for an hour."""
    await add_devices(db, 10)
    headers = bearer(await make_key(*OPERATOR))
    check = {
        "name": "api health",
        "http": {"url": server.url, "json_field": "p99_ms"},
        "pass_when": {"lte": 800},
        "interval_seconds": 1,
    }
    rollout = {"waves": [{"percent": 50, "hold_seconds": 3600}, {"percent": 100}]}
    body = campaign_body(rollout={**rollout, "checks": [check]})
    campaign_id = await create_and_start(client, headers, body)
    status, _now = await drive(db, campaign_id, ticks=4)
    waves = await waves_of(db, campaign_id)
    assert status == CampaignStatus.running and waves[0].status == "finished"
    assert waves[1].released_at is None
    return campaign_id, headers


async def _audit(db: Runtime, campaign_id: uuid.UUID, action: str) -> list[AuditEvent]:
    async with db.sessionmaker() as session:
        query = select(AuditEvent).where(
            AuditEvent.subject_id == str(campaign_id), AuditEvent.action == action
        )
        return list((await session.exec(query.order_by(col(AuditEvent.id)))).all())


async def test_promote_skips_the_rest_of_the_hold_once_the_checks_passed(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> None:
    server.answer({"p99_ms": 300})
    campaign_id, headers = await _holding(client, make_key, db, server)
    reader = bearer(await make_key(Scope.campaigns_read, Scope.campaigns_write))
    refused = await client.post(f"/v1/campaigns/{campaign_id}/promote", headers=reader)
    assert refused.status_code == 403
    promoted = await client.post(
        f"/v1/campaigns/{campaign_id}/promote", json={"reason": "metrics clean"}, headers=headers
    )
    assert promoted.status_code == 200, promoted.text
    [event] = await _audit(db, campaign_id, "campaign.promoted")
    assert event.reason == "metrics clean" and event.after == {"wave": 0, "override": False}
    status, _now = await drive(db, campaign_id, ticks=10)
    assert status == CampaignStatus.completed
    assert (await waves_of(db, campaign_id))[1].released_at is not None


async def test_promote_is_refused_until_the_checks_pass_unless_overridden(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> None:
    server.answer({"p99_ms": "n/a"})
    campaign_id, headers = await _holding(client, make_key, db, server)
    url = f"/v1/campaigns/{campaign_id}/promote"
    refused = await client.post(url, headers=headers)
    assert refused.status_code == 409, refused.text
    assert "'api health'" in refused.json()["detail"] and refused.json()["waiting"] == [
        "api health"
    ]
    assert await _audit(db, campaign_id, "campaign.promoted") == []
    short = await client.post(url, json={"override": {"reason": "short"}}, headers=headers)
    assert short.status_code == 422
    overridden = await client.post(
        url,
        json={"override": {"reason": "the health endpoint is down for maintenance"}},
        headers=headers,
    )
    assert overridden.status_code == 200, overridden.text
    [event] = await _audit(db, campaign_id, "campaign.promoted")
    assert event.after == {"wave": 0, "override": True}
    assert event.reason == "the health endpoint is down for maintenance"
    await drive(db, campaign_id, ticks=2)
    assert (await waves_of(db, campaign_id))[1].released_at is not None


async def test_extend_hold_lengthens_the_hold_and_undoes_a_promotion(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> None:
    server.answer({"p99_ms": 300})
    campaign_id, headers = await _holding(client, make_key, db, server)
    url = f"/v1/campaigns/{campaign_id}"
    assert (await client.post(f"{url}/promote", headers=headers)).status_code == 200
    extended = await client.post(
        f"{url}/extend-hold", json={"seconds": 600, "reason": "support asked"}, headers=headers
    )
    assert extended.status_code == 200, extended.text
    assert extended.json()["waves"][0]["hold_seconds"] == 4200
    [event] = await _audit(db, campaign_id, "campaign.hold_extended")
    assert event.before == {"wave": 0, "hold_seconds": 3600}
    assert event.after == {"wave": 0, "hold_seconds": 4200} and event.reason == "support asked"
    status, _now = await drive(db, campaign_id, ticks=3)
    assert status == CampaignStatus.running
    assert (await waves_of(db, campaign_id))[1].released_at is None
    for body, code in [
        ({"seconds": 0, "reason": "x"}, 422),
        ({"seconds": 600}, 422),
        ({"seconds": 30 * 24 * 3600, "reason": "too long"}, 422),
    ]:
        answer = await client.post(f"{url}/extend-hold", json=body, headers=headers)
        assert answer.status_code == code, (body, answer.text)


async def test_hold_controls_need_a_wave_holding_before_another(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = bearer(await make_key(*OPERATOR))
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    url = f"/v1/campaigns/{created.json()['id']}"
    assert (await client.post(f"{url}/promote", headers=headers)).status_code == 409
    extend = {"seconds": 60, "reason": "x"}
    assert (await client.post(f"{url}/extend-hold", json=extend, headers=headers)).status_code == (
        409
    )
    missing = f"/v1/campaigns/{uuid.uuid4()}/promote"
    assert (await client.post(missing, headers=headers)).status_code == 404
