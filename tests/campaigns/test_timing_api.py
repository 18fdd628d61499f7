"""The timing fields of a campaign through the API: local time, quiet hours, a send-by
deadline and priority; each bad value is refused naming the field, and nothing is stored."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.db.types import utcnow
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body

WRITER = (Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)


@pytest.fixture
async def writer(make_key: KeyMaker) -> dict[str, str]:
    return bearer(await make_key(*WRITER))


async def _count(db: Runtime) -> int:
    async with db.sessionmaker() as session:
        return len((await session.exec(select(Campaign))).all())


async def test_timing_fields_are_stored_shown_and_audited(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 3)
    critical = bearer(await make_key(*WRITER, Scope.campaigns_critical, name="duty manager"))
    expires = (utcnow() + timedelta(hours=6)).replace(microsecond=0)
    body = campaign_body(
        rollout={
            "waves": [{"percent": 1, "hold_seconds": 0}, {"percent": 100}],
            "local_time": "09:30",
        },
        quiet_hours=None,
        expires_at=expires.isoformat(),
        priority="critical",
    )
    created = await client.post("/v1/campaigns", json=body, headers=critical)
    assert created.status_code == 201, created.text
    view = created.json()
    assert (view["local_time"], view["quiet_hours"], view["priority"]) == (
        "09:30",
        "off",
        "critical",
    )
    assert view["expires_at"].startswith(expires.isoformat()[:19])
    assert all(w["expired"] == 0 and w["capped"] == 0 for w in view["waves"])
    async with db.sessionmaker() as session:
        event = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == "campaign.created"))
        ).one()
    assert event.after["priority"] == "critical" and event.after["quiet_hours"] == "off"
    assert event.actor.endswith("duty manager") or "duty manager" in event.actor

    # Absent quiet hours follow the deployment; a window is the campaign's own.
    plain = await client.post(
        "/v1/campaigns",
        json=campaign_body(quiet_hours={"start": "22:00", "end": "07:30"}),
        headers=critical,
    )
    assert plain.json()["quiet_hours"] == "22:00-07:30"
    default = await client.post("/v1/campaigns", json=campaign_body(), headers=critical)
    assert (default.json()["quiet_hours"], default.json()["priority"]) == (None, "normal")

    # A draft's timing may change; null turns a normal campaign's quiet hours off: refused.
    campaign_id = plain.json()["id"]
    patched = await client.patch(
        f"/v1/campaigns/{campaign_id}",
        json={"rollout": {"waves": [{"percent": 100}], "local_time": "18:05"}},
        headers=critical,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["local_time"] == "18:05"
    refused = await client.patch(
        f"/v1/campaigns/{campaign_id}", json={"quiet_hours": None}, headers=critical
    )
    assert refused.status_code == 422
    assert "quiet_hours" in refused.text and "critical" in refused.text


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"quiet_hours": None}, "quiet_hours", "allowed only with priority"),
        ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "quiet_hours", "differ"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours", "pattern"),
        ({"quiet_hours": {"start": "21:00"}}, "quiet_hours", "end"),
        ({"rollout": {"waves": [{"percent": 100}], "local_time": "9:30"}}, "local_time", "pattern"),
        (
            {"rollout": {"waves": [{"percent": 100}], "local_time": "24:00"}},
            "local_time",
            "pattern",
        ),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at", "not after the campaign's start"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at", "timezone"),
        ({"priority": "urgent"}, "priority", "normal"),
    ],
)
async def test_a_bad_timing_value_is_refused_naming_the_field(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    db: Runtime,
    changes: dict[str, Any],
    field: str,
    words: str,
) -> None:
    answer = await client.post("/v1/campaigns", json=campaign_body(**changes), headers=writer)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["status"] == 422
    assert any(field in e["field"] for e in problem["errors"]), problem
    assert words in answer.text
    assert await _count(db) == 0


async def test_the_critical_priority_needs_its_scope(
    client: httpx.AsyncClient, writer: dict[str, str], db: Runtime
) -> None:
    answer = await client.post(
        "/v1/campaigns", json=campaign_body(priority="critical"), headers=writer
    )
    assert answer.status_code == 403
    assert "campaigns:critical" in answer.text
    assert await _count(db) == 0


@pytest.fixture
async def lifetime_client(db: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    settings = db.settings.model_copy(update={"max_message_lifetime": "2h"})
    app = create_app(settings, runtime=dataclasses.replace(db, settings=settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as c:
        yield c


async def test_a_deadline_past_the_deployments_longest_lifetime_is_refused(
    lifetime_client: httpx.AsyncClient, writer: dict[str, str], db: Runtime
) -> None:
    far = (utcnow() + timedelta(hours=3)).isoformat()
    answer = await lifetime_client.post(
        "/v1/campaigns", json=campaign_body(expires_at=far), headers=writer
    )
    assert answer.status_code == 422
    assert "WAVECAST_MAX_MESSAGE_LIFETIME (7200 s)" in answer.text
    near = (utcnow() + timedelta(hours=1)).isoformat()
    ok = await lifetime_client.post(
        "/v1/campaigns", json=campaign_body(expires_at=near), headers=writer
    )
    assert ok.status_code == 201, ok.text
