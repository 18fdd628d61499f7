"""Wave checks through the API: stored with the campaign, shown, audited; bad ones refused
naming the field and nothing stored; campaigns stored before checks existed still read."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import select

from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.checks.spec import check_list
from app.main import create_app
from app.runtime import Runtime
from tests.checks.test_check_spec import EXAMPLES
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body

WRITER = (Scope.campaigns_write, Scope.campaigns_read)
WAVES = [{"percent": 1, "hold_seconds": 0}, {"percent": 100}]


async def test_checks_are_stored_shown_and_audited(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = bearer(await make_key(*WRITER))
    body = campaign_body(rollout={"waves": WAVES, "checks": EXAMPLES})
    created = await client.post("/v1/campaigns", json=body, headers=headers)
    assert created.status_code == 201, created.text
    expected = [c.stored() for c in check_list.validate_python(EXAMPLES)]
    shown = await client.get(f"/v1/campaigns/{created.json()['id']}", headers=headers)
    assert shown.json()["checks"] == expected
    assert expected[2]["interval_seconds"] == 10 and expected[2]["failure_limit"] == 1
    async with db.sessionmaker() as session:
        event = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == "campaign.created"))
        ).one()
    assert event.after["checks"] == expected

    # A draft's rollout edit replaces them.
    patched = await client.patch(
        f"/v1/campaigns/{created.json()['id']}",
        json={"rollout": {"waves": WAVES, "checks": EXAMPLES[3:]}},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    assert [c["name"] for c in patched.json()["checks"]] == ["provider failures"]


@pytest.mark.parametrize(
    ("checks", "field"),
    [
        ([{**EXAMPLES[2], "http": EXAMPLES[1]["http"]}], "rollout.checks.0"),
        ([{**EXAMPLES[1], "http": {"url": "http://u:p@h/", "json_field": "a"}}], "url"),
        ([EXAMPLES[2], EXAMPLES[2]], "appears twice"),
        ([{**EXAMPLES[2], "pass_when": {"lt": "400; drop table"}}], "pass_when"),
    ],
)
async def test_bad_checks_are_refused_and_nothing_stored(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, checks: list[object], field: str
) -> None:
    headers = bearer(await make_key(*WRITER))
    body = campaign_body(rollout={"waves": WAVES, "checks": checks})
    refused = await client.post("/v1/campaigns", json=body, headers=headers)
    assert refused.status_code == 422, refused.text
    assert field in refused.text
    async with db.sessionmaker() as session:
        assert (await session.exec(select(Campaign))).all() == []


async def test_campaigns_stored_before_checks_existed_show_none(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = bearer(await make_key(*WRITER))
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    campaign_id = uuid.UUID(created.json()["id"])
    async with db.sessionmaker() as session:
        await session.exec(update(Campaign).values(checks=None))  # type: ignore[call-overload]
        await session.commit()
    shown = await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)
    assert shown.status_code == 200 and shown.json()["checks"] == []


@pytest.fixture
async def with_defaults(db: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    defaults = check_list.validate_python(EXAMPLES[2:3])
    runtime = dataclasses.replace(
        db, settings=db.settings.model_copy(update={"default_checks": defaults})
    )
    app = create_app(runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_a_check_named_like_a_deployment_default_is_refused(
    with_defaults: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(*WRITER))
    body = campaign_body(rollout={"waves": WAVES, "checks": EXAMPLES[2:]})
    refused = await with_defaults.post("/v1/campaigns", json=body, headers=headers)
    assert refused.status_code == 422, refused.text
    assert "rollout.checks[0].name" in refused.text and "WAVECAST_DEFAULT_CHECKS" in refused.text
