"""The new-campaign form and its live checks, through the app (httpx)."""

from __future__ import annotations

import asyncio
import html
import re
import uuid

import httpx
from sqlmodel import select

from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.runtime import Runtime
from tests.conftest import KeyMaker
from tests.support import add_devices
from tests.ui.support import sign_in

WRITER = (Scope.campaigns_read, Scope.campaigns_write)


def form_fields(token: str, **overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "csrf": token,
        "name": "November statement",
        "kind": "live",
        "title": "Your statement is ready",
        "body": "Log in to see your November statement.",
        "audience_mode": "rules",
        "rule_match": "all",
        "rule_field": ["locale", ""],
        "rule_op": ["starts_with", ""],
        "rule_value": ["pl", ""],
        "wave_percent": ["1", "5", "100"],
        "wave_hold": ["0", "0", ""],
        "throttle": "500",
    }
    fields.update(overrides)
    return fields


async def test_the_form_creates_a_draft_with_a_rule_built_audience(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    answer = await client.post("/ui/campaigns/new", data=form_fields(token))
    assert answer.status_code == 303, answer.text
    campaign_id = uuid.UUID(answer.headers["location"].rsplit("/", 1)[1])
    async with db.sessionmaker() as session:
        campaign = (await session.exec(select(Campaign).where(Campaign.id == campaign_id))).one()
    assert campaign.audience_rules == {
        "all": [{"field": "locale", "op": "starts_with", "value": "pl"}]
    }
    assert campaign.throttle_per_second == 500
    assert campaign.status == "draft"
    page = await client.get(answer.headers["location"])
    assert "November statement" in page.text and "campaign.created" in page.text


async def test_a_refused_form_keeps_what_was_typed_and_places_the_reasons(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    typed = form_fields(
        token,
        title="",
        body="Kept body <b>as typed</b>",
        wave_percent=["50", "5", "100"],
        rule_value=["de", ""],
    )
    answer = await client.post("/ui/campaigns/new", data=typed)
    assert answer.status_code == 422
    text = answer.text
    # What was typed is back in the inputs, escaped.
    assert html.escape("Kept body <b>as typed</b>", quote=False) in text
    assert 'value="de"' in text and 'value="50"' in text
    # The API's field paths put each reason beside its input.
    assert 'id="err-title" data-errors-for="title" >' in text.replace("\n", "")
    assert "String should have at least 1 character" in text
    async with db.sessionmaker() as session:
        assert (await session.exec(select(Campaign))).all() == []
    # The rollout is checked by the service after the schema: fix the title and see it placed.
    answer = await client.post("/ui/campaigns/new", data={**typed, "title": "Statement"})
    assert answer.status_code == 422
    row_errors = text_between(answer.text, 'data-errors-for="waves.1"', "</ul>")
    assert "percent" in row_errors or "greater" in row_errors, row_errors


def text_between(text: str, start: str, end: str) -> str:
    head = text.index(start)
    return text[head : text.index(end, head)]


async def test_an_override_without_the_operate_scope_is_refused_beside_its_field(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    answer = await client.post(
        "/ui/campaigns/new",
        data=form_fields(token, override_reason="too short"),
    )
    assert answer.status_code == 422
    assert "override_reason" in answer.text
    assert "at least 10 characters" in text_between(
        answer.text, 'data-errors-for="override_reason"', "</ul>"
    )


async def test_preview_shows_audience_waves_bytes_and_the_guards_findings(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 30)  # two in three have locale pl-PL
    token = await sign_in(client, await make_key(*WRITER))
    answer = await client.post(
        "/ui/api/campaigns/preview",
        data=form_fields("", name="", title="ęśąćż"),
        headers={"X-CSRF-Token": token},
    )
    assert answer.status_code == 200
    preview = answer.json()["preview"]
    assert preview["audience_size"] == 20
    assert [w["cumulative_devices"] for w in preview["waves"]] == [1, 1, 20]
    assert preview["durations"] == [0.0, 0.0, round(19 / 500, 1)]
    assert preview["payload_bytes"]["android"] > 0
    fields = {f["field"] for f in preview["guard"]["findings"]}
    assert "content.title" in fields
    assert preview["guard_fields"]["title"]
    size = await client.post(
        "/ui/api/audience", data=form_fields(token), headers={"X-CSRF-Token": token}
    )
    assert size.json() == {"ok": True, "count": 20, "by_platform": {"android": 20, "ios": 0}}


async def test_preview_reports_incomplete_forms_by_field(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    answer = await client.post(
        "/ui/api/campaigns/preview",
        data=form_fields(token, rule_field=[""], rule_op=[""], rule_value=[""]),
    )
    body = answer.json()
    assert body["ok"] is False
    assert body["errors"]["audience"] == ["add at least one rule, or choose everyone on purpose"]


async def test_the_same_form_submitted_twice_creates_one_campaign(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    shown = await client.get("/ui/campaigns/new")
    [submission] = re.findall(r'name="submission" value="([0-9a-f]{32})"', shown.text)
    fields = form_fields(token, submission=submission)
    # A double click: both submits in flight at once, then a third after both answered.
    first, second = await asyncio.gather(
        client.post("/ui/campaigns/new", data=fields),
        client.post("/ui/campaigns/new", data=fields),
    )
    third = await client.post("/ui/campaigns/new", data=fields)
    answers = (first, second, third)
    assert [a.status_code for a in answers] == [303, 303, 303], [a.text for a in answers]
    assert len({a.headers["location"] for a in answers}) == 1
    async with db.sessionmaker() as session:
        assert len((await session.exec(select(Campaign))).all()) == 1
    # Each showing of the form is a new one: its submit creates another campaign.
    again = await client.get("/ui/campaigns/new")
    [fresh] = re.findall(r'name="submission" value="([0-9a-f]{32})"', again.text)
    assert fresh != submission
    answer = await client.post("/ui/campaigns/new", data=form_fields(token, submission=fresh))
    assert answer.status_code == 303 and answer.headers["location"] != first.headers["location"]
    async with db.sessionmaker() as session:
        assert len((await session.exec(select(Campaign))).all()) == 2
