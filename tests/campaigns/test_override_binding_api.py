"""A guard override covers the content it was given for, and nothing after it (production)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from app.auth.models import Scope
from app.campaigns import service as campaigns
from app.campaigns.models import Campaign
from app.guard.override import judge_content
from app.guard.send_check import send_refusal
from app.main import create_app
from app.rollout.planner import WaveSpec
from app.runtime import Runtime
from app.settings import Environment
from tests.conftest import KeyMaker, bearer
from tests.support import LIVE_CONTENT, approve, campaign_body

STAGED = {"waves": [{"percent": 1, "hold_seconds": 600}, {"percent": 100}]}
QUIZ = {"title": "Test your knowledge", "body": "Take our five-question quiz about saving."}
QUIZ_WITH_VARIABLE = {**QUIZ, "body": "Take our quiz, {{first_name}}, about saving."}
INCIDENT = {"title": "ęśąćż", "body": "test wiadomości push"}
OVERRIDE = {"reason": "Quiz campaign: 'Test' is the quiz's name, approved by J. Nowak"}


@pytest.fixture
async def prod(db: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    settings = db.settings.model_copy(update={"env": Environment.production})
    runtime = Runtime(settings, db.engine, db.sessionmaker, db.redis)
    app = create_app(settings, runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c:
        yield c


@pytest.fixture
async def operator(make_key: KeyMaker) -> dict[str, str]:
    return bearer(
        await make_key(
            Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read, name="operator"
        )
    )


@pytest.fixture
async def marketing(make_key: KeyMaker) -> dict[str, str]:
    """A marketing tool's key: it writes campaigns but may not override the guard."""
    return bearer(await make_key(Scope.campaigns_write, Scope.campaigns_read, name="marketing"))


async def _overridden_quiz(prod: httpx.AsyncClient, operator: dict[str, str]) -> uuid.UUID:
    created = await prod.post(
        "/v1/campaigns",
        json=campaign_body(content=QUIZ, rollout=STAGED, override=OVERRIDE),
        headers=operator,
    )
    assert created.status_code == 201, created.text
    assert created.json()["guard_override_reason"] == OVERRIDE["reason"]
    return uuid.UUID(created.json()["id"])


async def _row(db: Runtime, campaign_id: uuid.UUID) -> Campaign:
    async with db.sessionmaker() as session:
        return (await session.exec(select(Campaign).where(col(Campaign.id) == campaign_id))).one()


async def _events(
    prod: httpx.AsyncClient, headers: dict[str, str], action: str
) -> list[dict[str, Any]]:
    answer = await prod.get("/v1/audit", params={"action": action}, headers=headers)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def _send_refusal(db: Runtime, campaign_id: uuid.UUID) -> str | None:
    """The worker's check on the row and waves as the database holds them."""
    settings = db.settings.model_copy(update={"env": Environment.production})
    async with db.sessionmaker() as session:
        row = await campaigns.get(session, campaign_id)
        specs = [
            WaveSpec(w.percent, w.hold_seconds) for w in await campaigns.waves(session, row.id)
        ]
    return send_refusal(settings, row, specs)


async def test_the_override_is_bound_to_the_content_it_was_given_for(
    prod: httpx.AsyncClient, operator: dict[str, str], db: Runtime
) -> None:
    campaign_id = await _overridden_quiz(prod, operator)
    row = await _row(db, campaign_id)
    assert row.guard_override_hash == judge_content(row.content).binding
    assert row.guard_override_by is not None and row.guard_override_by.startswith("key:")
    # The worker, reading the same row back from the database, agrees.
    assert await _send_refusal(db, campaign_id) is None
    async with db.sessionmaker() as session:
        row = await campaigns.get(session, campaign_id)
        row.content = {**row.content, **INCIDENT}
        session.add(row)
        await session.commit()
    refusal = await _send_refusal(db, campaign_id)
    assert refusal is not None and "override on record" in refusal


async def test_an_edit_after_the_override_does_not_inherit_it(
    prod: httpx.AsyncClient, operator: dict[str, str], marketing: dict[str, str], db: Runtime
) -> None:
    """The incident: the quiz was overridden, then the content became the test message."""
    campaign_id = await _overridden_quiz(prod, operator)
    edited = await prod.patch(
        f"/v1/campaigns/{campaign_id}", json={"content": INCIDENT}, headers=marketing
    )
    assert edited.status_code == 422, edited.text
    assert edited.json()["guard"]["overridable"] is True
    assert {e["field"] for e in edited.json()["errors"]} >= {"content.title", "content.body"}
    row = await _row(db, campaign_id)
    assert row.content["title"] == QUIZ["title"]
    await approve(prod, db, campaign_id)  # in production the override is approved with it
    started = await prod.post(f"/v1/campaigns/{campaign_id}/start", json={}, headers=operator)
    assert started.status_code == 200, started.text
    assert started.json()["content"]["title"] == QUIZ["title"]


async def test_new_findings_on_edited_content_need_a_new_override(
    prod: httpx.AsyncClient, operator: dict[str, str], db: Runtime
) -> None:
    campaign_id = await _overridden_quiz(prod, operator)
    # Even the operator's own key: the override covered "Test", not "{{first_name}}".
    refused = await prod.patch(
        f"/v1/campaigns/{campaign_id}", json={"content": QUIZ_WITH_VARIABLE}, headers=operator
    )
    assert refused.status_code == 422, refused.text
    assert any(f["code"] == "template_variable" for f in refused.json()["guard"]["findings"])
    again = {"reason": "The variable is the quiz's literal answer; checked by J. Nowak"}
    accepted = await prod.patch(
        f"/v1/campaigns/{campaign_id}",
        json={"content": QUIZ_WITH_VARIABLE, "override": again},
        headers=operator,
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["guard_override_reason"] == again["reason"]
    row = await _row(db, campaign_id)
    assert row.content["body"] == QUIZ_WITH_VARIABLE["body"]
    assert row.guard_override_hash == judge_content(row.content).binding
    voided = await _events(prod, operator, "guard.override_voided")
    assert [e["subject_id"] for e in voided] == [str(campaign_id)]
    assert voided[0]["before"]["reason"] == OVERRIDE["reason"]
    assert len(await _events(prod, operator, "guard.overridden")) == 2


async def test_an_edit_to_clean_content_voids_the_override_for_good(
    prod: httpx.AsyncClient, operator: dict[str, str], marketing: dict[str, str], db: Runtime
) -> None:
    campaign_id = await _overridden_quiz(prod, operator)
    overrider = (await _row(db, campaign_id)).guard_override_by
    cleaned = await prod.patch(
        f"/v1/campaigns/{campaign_id}", json={"content": LIVE_CONTENT}, headers=marketing
    )
    assert cleaned.status_code == 200, cleaned.text
    assert cleaned.json()["guard_override_reason"] is None
    row = await _row(db, campaign_id)
    assert (row.guard_override_reason, row.guard_override_by, row.guard_override_hash) == (
        None,
        None,
        None,
    )
    voided = await _events(prod, operator, "guard.override_voided")
    assert len(voided) == 1
    assert voided[0]["reason"].startswith("override voided")
    # The edit voided it, on the editor's authority; the record names whose override it was.
    assert voided[0]["actor"] != overrider
    assert voided[0]["before"] == {"reason": OVERRIDE["reason"], "by": overrider}
    # Putting the overridden words back does not bring the override back.
    back = await prod.patch(
        f"/v1/campaigns/{campaign_id}", json={"content": QUIZ}, headers=marketing
    )
    assert back.status_code == 422, back.text


async def test_an_audience_or_rollout_edit_keeps_the_override_and_its_author(
    prod: httpx.AsyncClient, operator: dict[str, str], marketing: dict[str, str], db: Runtime
) -> None:
    campaign_id = await _overridden_quiz(prod, operator)
    before = await _row(db, campaign_id)
    edited = await prod.patch(
        f"/v1/campaigns/{campaign_id}",
        json={
            "rollout": {"waves": [{"percent": 2, "hold_seconds": 900}, {"percent": 100}]},
            "audience": {"rules": {"field": "platform", "op": "eq", "value": "android"}},
        },
        headers=marketing,
    )
    assert edited.status_code == 200, edited.text
    after = await _row(db, campaign_id)
    assert (after.guard_override_reason, after.guard_override_by, after.guard_override_hash) == (
        before.guard_override_reason,
        before.guard_override_by,
        before.guard_override_hash,
    )
    assert await _events(prod, operator, "guard.override_voided") == []
    await approve(prod, db, campaign_id)
    started = await prod.post(f"/v1/campaigns/{campaign_id}/start", json={}, headers=operator)
    assert started.status_code == 200, started.text


@pytest.mark.parametrize("road", ["content edited elsewhere", "override from before bindings"])
async def test_start_refuses_an_override_that_does_not_cover_the_content(
    prod: httpx.AsyncClient, operator: dict[str, str], db: Runtime, road: str
) -> None:
    campaign_id = await _overridden_quiz(prod, operator)
    async with db.sessionmaker() as session:
        row = (await session.exec(select(Campaign).where(col(Campaign.id) == campaign_id))).one()
        if road == "content edited elsewhere":
            row.content = {**row.content, **INCIDENT}
        else:
            row.guard_override_hash = None
        session.add(row)
        await session.commit()
    refused = await prod.post(f"/v1/campaigns/{campaign_id}/start", json={}, headers=operator)
    assert refused.status_code == 422, refused.text
    assert (await _row(db, campaign_id)).status == "draft"
    again = {"reason": "Re-read the message as it is now; approved by J. Nowak"}
    # In production a new override is approved with the campaign: not given at the start.
    unapproved = await prod.post(
        f"/v1/campaigns/{campaign_id}/start", json={"override": again}, headers=operator
    )
    assert unapproved.status_code == 409, unapproved.text
    assert unapproved.json()["type"].endswith("/approval-required")
    given = await prod.patch(
        f"/v1/campaigns/{campaign_id}", json={"override": again}, headers=operator
    )
    assert given.status_code == 200, given.text
    await approve(prod, db, campaign_id)
    started = await prod.post(f"/v1/campaigns/{campaign_id}/start", json={}, headers=operator)
    assert started.status_code == 200, started.text
    row = await _row(db, campaign_id)
    assert row.guard_override_reason == again["reason"]
    assert row.guard_override_hash == judge_content(row.content).binding
    assert len(await _events(prod, operator, "guard.override_voided")) == 1
