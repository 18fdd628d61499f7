"""`/wavecast` and the message buttons against a real database and Redis, signed with Slack's
algorithm, the team channel being the Slack fake driven by the real slack_sdk."""

from __future__ import annotations

import dataclasses
import time
import uuid

import httpx
from sqlmodel import col, select
from wavecast_tools.fakes.slack import SlackFake

from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.control.gate import Gate
from app.control.plane import Control
from app.killswitch import service as switches
from app.main import create_app
from app.notify.compose import APPROVE_ACTION, CONFIRM_ACTION
from app.notify.dispatch import OutboxDeps, dispatch
from app.notify.kinds import Kind
from app.runtime import Runtime
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.notify.support import slack_rows
from tests.slack.support import command, command_body, press, signed_headers
from tests.support import add_devices, campaign_body, campaign_status, create_and_start, wait_for


async def person(
    make_person: PersonMaker, make_key: KeyMaker, name: str, user: str, *scopes: Scope
) -> uuid.UUID:
    pid = await make_person(name, slack_user_id=user)
    if scopes:
        await make_key(*scopes, name=f"{name}'s key", person=pid)
    return pid


async def running(client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime) -> uuid.UUID:
    await add_devices(db, 3)
    operator = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_operate, name="crm"))
    return await create_and_start(client, operator, campaign_body())


async def events(db: Runtime, action: str) -> list[AuditEvent]:
    async with db.sessionmaker() as session:
        query = (
            select(AuditEvent)
            .where(col(AuditEvent.action) == action)
            .order_by(col(AuditEvent.sequence))
        )
        return list((await session.exec(query)).all())


async def test_bad_or_stale_signatures_are_refused_and_change_nothing(
    slack_client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker, db: Runtime
) -> None:
    await person(make_person, make_key, "Ada", "UADA", Scope.kill)
    campaign = await running(slack_client, make_key, db)
    body = command_body(f"kill {campaign} forged", "UADA")
    forged = signed_headers(body, secret="not-the-signing-secret")
    stale = signed_headers(body, at=time.time() - 301)
    tampered = signed_headers(body)
    for headers, content in (
        (forged, body),
        (stale, body),
        (tampered, body.replace(b"forged", b"forgeD")),
        ({"content-type": "application/x-www-form-urlencoded"}, body),
    ):
        answer = await slack_client.post("/slack/commands", content=content, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
    pressed = await slack_client.post(
        "/slack/interactions", content=b"payload=%7B%7D", headers=forged
    )
    assert pressed.status_code == 401
    assert await campaign_status(db, campaign) is CampaignStatus.running
    assert await events(db, "campaign.kill") == []


async def test_an_unknown_user_and_a_missing_scope_are_refused_in_slack_and_audited(
    slack_client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker, db: Runtime
) -> None:
    await person(make_person, make_key, "Reader", "UREAD", Scope.campaigns_read)
    campaign = await running(slack_client, make_key, db)
    stranger = await command(slack_client, f"kill {campaign} who am I", "USTRANGER")
    assert stranger.status_code == 200
    assert stranger.json()["response_type"] == "ephemeral"
    assert "USTRANGER" in stranger.json()["text"] and "not linked" in stranger.json()["text"]
    reader = await command(slack_client, f"kill {campaign} not mine", "UREAD")
    assert "Reader holds no key with the 'kill' scope" in reader.json()["text"]
    assert await campaign_status(db, campaign) is CampaignStatus.running
    refused = await events(db, "slack.refused")
    assert [e.actor for e in refused] == ["slack:USTRANGER", "slack:UREAD (Reader)"]
    assert [e.channel for e in refused] == ["slack", "slack"]
    assert refused[1].person_name == "Reader"
    assert refused[0].after == {"attempted": f"/wavecast kill {campaign} who am I"}


async def test_stopping_takes_one_person_and_is_done_when_the_answer_says_so(
    slack_client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker, db: Runtime
) -> None:
    await person(
        make_person,
        make_key,
        "Ada",
        "UADA",
        Scope.kill,
        Scope.campaigns_operate,
        Scope.campaigns_read,
    )
    first = await running(slack_client, make_key, db)
    status = await command(slack_client, "status", "UADA")
    assert "November statement" in status.json()["text"] and "running" in status.json()["text"]
    paused = await command(slack_client, f"pause {str(first)[:8]} checking the copy", "UADA")
    assert paused.json()["response_type"] == "in_channel", paused.text
    assert "paused by Ada" in paused.json()["text"]
    assert await campaign_status(db, first) is CampaignStatus.paused
    killed = await command(slack_client, 'kill "November statement" wrong segment', "UADA")
    assert "killed by Ada" in killed.json()["text"], killed.text
    assert await campaign_status(db, first) is CampaignStatus.killed
    kill = (await events(db, "campaign.kill"))[0]
    assert (kill.person_name, kill.channel, kill.reason) == ("Ada", "slack", "wrong segment")
    unknown = await command(slack_client, "pause deadbeef00 nothing", "UADA")
    assert "no campaign matches" in unknown.json()["text"]
    usage = await command(slack_client, "kill", "UADA")
    assert "needs a campaign and a reason" in usage.json()["text"]


async def test_kill_all_engages_the_switch_and_release_takes_a_second_admin(
    slack_client: httpx.AsyncClient,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    await person(make_person, make_key, "Ada", "UADA", Scope.admin)
    await person(make_person, make_key, "Grace", "UGRACE", Scope.admin)
    campaign = await running(slack_client, make_key, db)
    engaged = await command(slack_client, "kill-all app is down", "UADA")
    assert "Global kill switch engaged by Ada: 1 campaign(s) paused" in engaged.json()["text"]
    asked = await command(slack_client, "release incident over", "UADA")
    assert "a different person" in asked.json()["text"]
    await dispatch(outbox)
    request = next(m for m in slack_fake.posted() if "second person" in (m.text or ""))
    button = next(b for b in request.blocks or [] if b["type"] == "actions")["elements"][0]
    assert button["action_id"] == CONFIRM_ACTION

    own = await press(slack_client, CONFIRM_ACTION, button["value"], "UADA")
    assert own.status_code == 200
    await wait_for(lambda: _ephemeral(slack_fake, "UADA", "a second person"), within=5)
    async with db.sessionmaker() as session:
        assert (await switches.get_switch(session)).engaged
    await press(slack_client, CONFIRM_ACTION, button["value"], "UGRACE")
    await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", "released by Grace"), within=5)
    released = (await events(db, "kill_switch.released"))[0]
    assert released.person_name == "Grace" and "asked by Ada, confirmed by Grace" in (
        released.reason or ""
    )
    assert await campaign_status(db, campaign) is CampaignStatus.paused  # resumed one by one
    await press(slack_client, CONFIRM_ACTION, button["value"], "UGRACE")
    await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", "Already confirmed"), within=5)
    await dispatch(outbox)
    assert "Released by Grace (via slack)" in str(request.blocks)


async def test_resume_needs_a_second_person_with_the_scope(
    slack_client: httpx.AsyncClient,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    await person(make_person, make_key, "Ada", "UADA", Scope.campaigns_operate)
    await person(make_person, make_key, "Grace", "UGRACE", Scope.campaigns_operate)
    await person(make_person, make_key, "Reader", "UREAD", Scope.campaigns_read)
    campaign = await running(slack_client, make_key, db)
    await command(slack_client, f"pause {campaign} copy check", "UADA")
    asked = await command(slack_client, f"resume {campaign} copy is fine", "UADA")
    assert asked.json()["response_type"] == "in_channel"
    assert await campaign_status(db, campaign) is CampaignStatus.paused
    await dispatch(outbox)
    kinds = [r.kind for r in await slack_rows(db)]
    assert kinds[-1] == Kind.confirmation_requested
    request = slack_fake.posted()[-1]
    assert "copy is fine" in str(request.blocks)
    value = next(b for b in request.blocks or [] if b["type"] == "actions")["elements"][0]["value"]

    await press(slack_client, CONFIRM_ACTION, value, "UADA")
    await wait_for(lambda: _ephemeral(slack_fake, "UADA", "a second person"), within=5)
    await press(slack_client, CONFIRM_ACTION, value, "UREAD")
    await wait_for(lambda: _ephemeral(slack_fake, "UREAD", "'campaigns:operate' scope"), within=5)
    assert await campaign_status(db, campaign) is CampaignStatus.paused
    await press(slack_client, CONFIRM_ACTION, value, "UGRACE")
    await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", "resumed by Grace"), within=5)
    assert await campaign_status(db, campaign) is CampaignStatus.running
    resume = (await events(db, "campaign.resume"))[0]
    assert (resume.person_name, resume.channel) == ("Grace", "slack")
    refused = await events(db, "slack.refused")
    assert [e.person_name for e in refused] == ["Ada", "Reader"]
    # The request's message loses its Confirm button and says who resumed it.
    await dispatch(outbox)
    assert request.edits and "Resumed by Grace (via slack)" in str(request.blocks)
    assert all(b["type"] != "actions" for b in request.blocks or [])


async def test_approve_from_the_approval_request_message(
    slack_runtime: Runtime,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    settings = slack_runtime.settings.model_copy(update={"approval_required_above": 0})
    runtime = dataclasses.replace(slack_runtime, settings=settings)
    outbox.settings = settings
    author = await person(make_person, make_key, "Ada", "UADA", Scope.campaigns_approve)
    await person(make_person, make_key, "Grace", "UGRACE", Scope.campaigns_approve)
    await person(make_person, make_key, "Bot", "UBOT")
    writer = bearer(
        await make_key(
            Scope.campaigns_write,
            Scope.campaigns_operate,
            Scope.campaigns_read,
            name="Ada's API key",
            person=author,
        )
    )
    await add_devices(db, 3)
    app = create_app(settings, runtime=runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=writer)
        campaign = created.json()["id"]
        refused = await client.post(f"/v1/campaigns/{campaign}/start", headers=writer)
        assert refused.status_code == 409
        await dispatch(outbox)
        request = slack_fake.posted()[-1]
        assert "Approval requested" in (request.text or "")
        assert "Grace" in str(request.blocks)  # who may approve
        button = next(b for b in request.blocks or [] if b["type"] == "actions")["elements"][0]
        read = await client.get(f"/v1/campaigns/{campaign}/approval", headers=writer)
        shown = f"{campaign}:{read.json()['binding']}"
        assert (button["action_id"], button["value"]) == (APPROVE_ACTION, shown)

        await press(client, APPROVE_ACTION, shown, "UADA")
        await wait_for(lambda: _ephemeral(slack_fake, "UADA", "Refused"), within=5)
        await press(client, APPROVE_ACTION, shown, "UBOT")
        await wait_for(lambda: _ephemeral(slack_fake, "UBOT", "Refused"), within=5)
        await press(client, APPROVE_ACTION, shown, "UGRACE")
        await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", "approved by Grace"), within=5)
        approved = (await events(db, "campaign.approved"))[0]
        assert (approved.person_name, approved.channel) == ("Grace", "slack")
        started = await client.post(f"/v1/campaigns/{campaign}/start", headers=writer)
        assert started.status_code == 200, started.text
        await dispatch(outbox)
    # The request's message lost its button and says who approved.
    assert request.edits and "Approved by Grace" in str(request.blocks)
    assert all(b["type"] != "actions" for b in request.blocks or [])
    assert [e.person_name for e in await events(db, "slack.refused")] == ["Ada", "Bot"]


async def test_an_approve_button_posted_before_an_edit_approves_nothing(
    slack_runtime: Runtime,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    settings = slack_runtime.settings.model_copy(update={"approval_required_above": 0})
    runtime = dataclasses.replace(slack_runtime, settings=settings)
    outbox.settings = settings
    author = await person(make_person, make_key, "Ada", "UADA")
    await person(make_person, make_key, "Grace", "UGRACE", Scope.campaigns_approve)
    writer = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_read, name="Ada's", person=author)
    )
    app = create_app(settings, runtime=runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=writer)
        campaign = created.json()["id"]
        await dispatch(outbox)
        first = slack_fake.posted()[-1]
        old = next(b for b in first.blocks or [] if b["type"] == "actions")["elements"][0]

        # The author rewrites the content after the message was posted.
        edited = await client.patch(
            f"/v1/campaigns/{campaign}",
            json={"content": {"title": "Your statement", "body": "Now with a new fee."}},
            headers=writer,
        )
        assert edited.status_code == 200, edited.text
        await press(client, APPROVE_ACTION, old["value"], "UGRACE")
        changed = "changed since it was read"
        await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", changed), within=5)
        # A button from before buttons said what they showed approves nothing either.
        await press(client, APPROVE_ACTION, campaign, "UGRACE")
        await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", "which version"), within=5)
        waiting = await client.get(f"/v1/campaigns/{campaign}/approval", headers=writer)
        assert waiting.json()["approval"] is None and waiting.json()["waiting"] is True
        assert await events(db, "campaign.approved") == []

        # The edit's own request carries the version as edited: that one approves it.
        await dispatch(outbox)
        second = slack_fake.posted()[-1]
        assert second is not first
        new = next(b for b in second.blocks or [] if b["type"] == "actions")["elements"][0]
        assert new["value"] == f"{campaign}:{waiting.json()['binding']}" != old["value"]
        await press(client, APPROVE_ACTION, new["value"], "UGRACE")
        await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", "approved by Grace"), within=5)
        approved = (await events(db, "campaign.approved"))[0]
        assert approved.after and approved.after["binding"] == waiting.json()["binding"]


async def _ephemeral(fake: SlackFake, user: str, words: str) -> bool:
    return any(m.ephemeral_to == user and words in (m.text or "") for m in fake.messages)


async def test_a_stop_still_confirming_after_slacks_3_seconds_is_answered_in_time_and_followed_up(
    slack_client: httpx.AsyncClient,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
    slack_fake: SlackFake,
) -> None:
    await person(make_person, make_key, "Ada", "UADA", Scope.kill)
    campaign = await running(slack_client, make_key, db)
    # A batch on the wire that does not finish: its permit holds the drain past 5 s.
    async with db.sessionmaker() as session:
        switch = await switches.get_switch(session)
    await Control(db.redis).publish_switch(switch)
    await Gate(db.redis).acquire(campaign, ttl_seconds=30)
    started = time.monotonic()
    answer = await command(slack_client, f"kill {campaign} stuck provider", "UADA")
    took = time.monotonic() - started
    assert answer.status_code == 200
    assert took < 3.0, f"answered after {took:.2f} s"
    assert "Recorded and in force" in answer.json()["text"]
    assert await campaign_status(db, campaign) is CampaignStatus.killed
    await wait_for(lambda: _ephemeral(slack_fake, "UADA", "not finished within"), within=10)
