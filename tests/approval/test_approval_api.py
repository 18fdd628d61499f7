"""Four-eyes approval through the API: who may approve, what an approval covers, and the
start it gates."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.auth.models import Scope
from app.main import create_app
from app.runtime import Runtime
from app.settings import Environment, Settings
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.support import add_devices, approve, campaign_body

STAGED = {"waves": [{"percent": 1, "hold_seconds": 600}, {"percent": 100}]}
QUIZ = {"title": "Test your knowledge", "body": "Take our five-question quiz about saving."}
OVERRIDE = {"reason": "Quiz campaign: 'Test' is the quiz's name, checked by J. Nowak"}


@asynccontextmanager
async def api(db: Runtime, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    configured = db.settings.model_copy(update=settings)
    runtime = Runtime(configured, db.engine, db.sessionmaker, db.redis)
    app = create_app(configured, runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as c:
        yield c


async def _author_and_approver(
    make_person: PersonMaker, make_key: KeyMaker
) -> tuple[dict[str, str], dict[str, str]]:
    """The author holds every right there is; the approver is another human."""
    author = await make_person("Author")
    approver = await make_person("Approver")
    return (
        bearer(await make_key(Scope.admin, person=author)),
        bearer(await make_key(Scope.campaigns_approve, Scope.campaigns_read, person=approver)),
    )


async def test_a_second_human_approves_and_only_then_the_campaign_starts(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    await add_devices(db, 20)
    author, approver = await _author_and_approver(make_person, make_key)
    async with api(db, approval_required_above=10) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        campaign_id = created.json()["id"]

        refused = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=author)
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert problem["type"].endswith("/approval-required")
        assert "has no approval" in problem["detail"]
        assert "WAVECAST_APPROVAL_REQUIRED_ABOVE=10" in problem["detail"]
        assert problem["approval"]["missing"] == "campaign approval"
        assert problem["approval"]["may_approve"] == ["Approver"]

        # The author may not approve their own campaign, though they hold admin.
        own = await client.post(f"/v1/campaigns/{campaign_id}/approve", headers=author)
        assert own.status_code == 403, own.text
        assert "second person" in own.json()["detail"]

        waiting = (await client.get(f"/v1/campaigns/{campaign_id}/approval", headers=author)).json()
        assert (waiting["required"], waiting["waiting"], waiting["authors"]) == (
            True,
            True,
            ["Author"],
        )

        approved = await client.post(
            f"/v1/campaigns/{campaign_id}/approve", json={"comment": "read it"}, headers=approver
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["approval"]["person_name"] == "Approver"
        assert approved.json()["approval"]["channel"] == "api"
        assert approved.json()["waiting"] is False

        started = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=author)
        assert started.status_code == 200, started.text
        events = (
            await client.get("/v1/audit", params={"action": "campaign.approved"}, headers=author)
        ).json()["items"]
        assert [(e["person_name"], e["channel"], e["reason"]) for e in events] == [
            ("Approver", "api", "read it")
        ]
        assert events[0]["key_id"] is not None and events[0]["hash_version"] == 2


async def test_below_the_threshold_no_approval_is_needed(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    await add_devices(db, 5)
    author, _ = await _author_and_approver(make_person, make_key)
    async with api(db, approval_required_above=10) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        started = await client.post(f"/v1/campaigns/{created.json()['id']}/start", headers=author)
        assert started.status_code == 200, started.text


async def test_an_edit_voids_the_approval_and_the_editor_becomes_an_author(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    author, approver = await _author_and_approver(make_person, make_key)
    async with api(db, approval_required_above=0) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        campaign_id = created.json()["id"]
        assert (
            await client.post(f"/v1/campaigns/{campaign_id}/approve", headers=approver)
        ).status_code == 200
        edited = await client.patch(
            f"/v1/campaigns/{campaign_id}", json={"throttle": {"per_second": 5000}}, headers=author
        )
        assert edited.status_code == 200, edited.text
        refused = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=author)
        assert refused.status_code == 409, refused.text
        assert "was voided: the campaign was edited" in refused.json()["detail"]
        voided = (
            await client.get(
                "/v1/audit", params={"action": "campaign.approval_voided"}, headers=author
            )
        ).json()["items"]
        assert voided[0]["before"]["approved_by"] == "Approver"

        # The approver edits it now: they wrote this version, so they may not approve it.
        editor_person = await make_person("Editor")
        editor = await make_key(
            Scope.campaigns_write, Scope.campaigns_approve, name="editor", person=editor_person
        )
        assert (
            await client.patch(
                f"/v1/campaigns/{campaign_id}", json={"name": "Renamed"}, headers=bearer(editor)
            )
        ).status_code == 200
        self_approval = await client.post(
            f"/v1/campaigns/{campaign_id}/approve", headers=bearer(editor)
        )
        assert self_approval.status_code == 403
        assert (
            await client.post(f"/v1/campaigns/{campaign_id}/approve", headers=approver)
        ).status_code == 200
        assert (
            await client.post(f"/v1/campaigns/{campaign_id}/start", headers=author)
        ).status_code == 200


async def test_a_change_by_another_road_is_not_covered(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    from app.campaigns.models import Campaign

    author, approver = await _author_and_approver(make_person, make_key)
    async with api(db, approval_required_above=0) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        campaign_id = created.json()["id"]
        await client.post(f"/v1/campaigns/{campaign_id}/approve", headers=approver)
        async with db.sessionmaker() as session:
            row = await session.get(Campaign, uuid.UUID(campaign_id))
            assert row is not None
            row.audience_rules = {"field": "platform", "op": "eq", "value": "ios"}
            session.add(row)
            await session.commit()
        refused = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=author)
        assert refused.status_code == 409, refused.text


async def test_a_service_person_cannot_approve_whatever_its_scopes(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    author, _ = await _author_and_approver(make_person, make_key)
    tool = await make_person("CRM", kind="service")
    crm = bearer(await make_key(Scope.admin, person=tool))
    async with api(db, approval_required_above=0) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        answer = await client.post(f"/v1/campaigns/{created.json()['id']}/approve", headers=crm)
        assert answer.status_code == 403, answer.text
        assert "service, not a human" in answer.json()["detail"]
        no_scope = bearer(await make_key(Scope.campaigns_operate, person=await make_person()))
        answer = await client.post(
            f"/v1/campaigns/{created.json()['id']}/approve", headers=no_scope
        )
        assert answer.status_code == 403
        assert "campaigns:approve" in answer.json()["detail"]


async def test_test_campaigns_and_development_need_no_approval(
    db: Runtime, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    await add_devices(db, 3, test_devices=3)
    author, _ = await _author_and_approver(make_person, make_key)
    async with api(db) as client:  # development, WAVECAST_APPROVAL_REQUIRED_ABOVE unset
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        assert (
            await client.post(f"/v1/campaigns/{created.json()['id']}/start", headers=author)
        ).status_code == 200
    async with api(db, approval_required_above=0) as client:
        test = await client.post("/v1/campaigns", json=campaign_body(kind="test"), headers=author)
        assert (
            await client.post(f"/v1/campaigns/{test.json()['id']}/start", headers=author)
        ).status_code == 200, "a test campaign reaches test devices only"


async def test_in_production_every_live_campaign_and_any_override_need_a_second_person(
    db: Runtime, is_postgres: bool, make_person: PersonMaker, make_key: KeyMaker
) -> None:
    if not is_postgres:
        pytest.skip("a production deployment refuses SQLite: set WAVECAST_TEST_DATABASE_URL")
    author, _ = await _author_and_approver(make_person, make_key)
    async with api(db, env=Environment.production) as client:
        created = await client.post(
            "/v1/campaigns",
            json=campaign_body(content=QUIZ, rollout=STAGED, override=OVERRIDE),
            headers=author,
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        refused = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=author)
        assert refused.status_code == 409, refused.text
        reasons = refused.json()["approval"]["reasons"]
        assert any("WAVECAST_APPROVAL_REQUIRED_ABOVE=0" in r for r in reasons)
        assert any("guard override" in r for r in reasons)
        status = (await client.get(f"/v1/campaigns/{campaign_id}/approval", headers=author)).json()
        assert status["override_reason"] == OVERRIDE["reason"]  # shown to the approver
        approval = await approve(client, db, campaign_id)
        assert approval["approval"]["override_reason"] == OVERRIDE["reason"]
        # A new override at the start is not what was approved.
        other = {"reason": "A different reason, given at the last moment"}
        late = await client.post(
            f"/v1/campaigns/{campaign_id}/start", json={"override": other}, headers=author
        )
        assert late.status_code == 409, late.text
        started = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=author)
        assert started.status_code == 200, started.text


def test_the_threshold_in_each_environment() -> None:
    base: dict[str, Any] = {"key_pepper": "p"}
    development = Settings(**base)
    assert development.approval_threshold is None
    assert Settings(**base, approval_required_above=500).approval_threshold == 500
    production = Settings.model_construct(env=Environment.production, approval_required_above=None)
    assert production.approval_threshold == 0
    raised = Settings.model_construct(env=Environment.production, approval_required_above=1000)
    assert raised.approval_threshold == 1000
    with pytest.raises(ValueError, match="WAVECAST_APPROVAL_REQUIRED_ABOVE"):
        Settings(**base, approval_required_above=-1)
