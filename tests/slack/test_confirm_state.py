"""A Confirm starts again only what its request was about: a newer stop (the switch engaged
again, the campaign paused again by a check) is never undone by an old button, and a
request lapses after an hour. Real database and Redis, Slack's own signing, the Slack fake."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from wavecast_tools.fakes.slack import SlackFake

from app.auth.models import Scope
from app.campaigns import commands as campaign_commands
from app.campaigns.state import CampaignStatus
from app.control.plane import Control
from app.db.types import utcnow
from app.killswitch import service as switches
from app.notify.compose import CONFIRM_ACTION
from app.notify.dispatch import OutboxDeps, dispatch
from app.runtime import Runtime
from app.slack import commands
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.slack.support import command, press
from tests.slack.test_commands import _ephemeral, events, person, running
from tests.support import campaign_status, wait_for


async def _confirm_value(slack_fake: SlackFake, outbox: OutboxDeps, words: str) -> str:
    await dispatch(outbox)
    request = next(m for m in reversed(slack_fake.posted()) if words in str(m.blocks))
    button = next(b for b in request.blocks or [] if b["type"] == "actions")["elements"][0]
    assert button["action_id"] == CONFIRM_ACTION
    return str(button["value"])


async def _engaged(db: Runtime) -> bool:
    async with db.sessionmaker() as session:
        return (await switches.get_switch(session)).engaged


async def test_an_old_release_confirm_does_not_release_a_newer_incidents_switch(
    slack_client: httpx.AsyncClient,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    await person(make_person, make_key, "Ada", "UADA", Scope.admin)
    await person(make_person, make_key, "Grace", "UGRACE", Scope.admin)
    admin = bearer(await make_key(Scope.admin, name="on-call API", person=await make_person("Op")))
    await running(slack_client, make_key, db)
    await command(slack_client, "kill-all incident one", "UADA")
    asked = await command(slack_client, "release incident one is over", "UADA")
    assert "a different person" in asked.json()["text"]
    value = await _confirm_value(slack_fake, outbox, "incident one is over")

    # Released through the API, then engaged again for a second incident.
    released = await slack_client.post(
        "/v1/kill-switch/release", json={"reason": "incident one is over"}, headers=admin
    )
    assert released.status_code == 200, released.text
    engaged = await slack_client.post(
        "/v1/kill-switch", json={"reason": "incident two"}, headers=admin
    )
    assert engaged.status_code == 200, engaged.text

    await press(slack_client, CONFIRM_ACTION, value, "UGRACE")
    await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", "released or engaged again"), within=5)
    assert await _engaged(db)
    assert [e.reason for e in await events(db, "kill_switch.released")] == ["incident one is over"]
    refused = await events(db, "slack.refused")
    assert [e.person_name for e in refused] == ["Grace"]
    assert "since this request was made" in (refused[0].reason or "")
    assert await events(db, "slack.confirmed") == []

    # A request made about the second incident is confirmed as usual.
    await command(slack_client, "release incident two is over", "UADA")
    fresh = await _confirm_value(slack_fake, outbox, "incident two is over")
    await press(slack_client, CONFIRM_ACTION, fresh, "UGRACE")
    await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", "released by Grace"), within=5)
    assert not await _engaged(db)


async def test_an_old_resume_confirm_does_not_resume_past_a_later_automatic_pause(
    slack_client: httpx.AsyncClient,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    await person(make_person, make_key, "Ada", "UADA", Scope.campaigns_operate)
    await person(make_person, make_key, "Grace", "UGRACE", Scope.campaigns_operate)
    operator = bearer(
        await make_key(Scope.campaigns_operate, name="ops API", person=await make_person("Op"))
    )
    campaign = await running(slack_client, make_key, db)
    await command(slack_client, f"pause {campaign} copy check", "UADA")
    await command(slack_client, f"resume {campaign} copy is fine", "UADA")
    value = await _confirm_value(slack_fake, outbox, "copy is fine")

    # Resumed through the API; then a wave check pauses it (the system's own pause).
    resumed = await slack_client.post(
        f"/v1/campaigns/{campaign}/resume", json={"reason": "copy is fine"}, headers=operator
    )
    assert resumed.status_code == 200, resumed.text
    await campaign_commands.auto_pause(
        db.sessionmaker,
        Control(db.redis),
        campaign,
        "wave check 'tap surge' failed: opens_per_second 950 (pass when < 400)",
    )
    assert await campaign_status(db, campaign) is CampaignStatus.paused

    await press(slack_client, CONFIRM_ACTION, value, "UGRACE")
    await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", "changed state"), within=5)
    assert await campaign_status(db, campaign) is CampaignStatus.paused
    refused = await events(db, "slack.refused")
    assert [e.person_name for e in refused] == ["Grace"]
    assert "could undo a newer stop" in (refused[0].reason or "")
    assert [e.person_name for e in await events(db, "campaign.resume")] == ["Op"]


async def test_a_confirm_after_an_hour_is_refused(
    slack_client: httpx.AsyncClient,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await person(make_person, make_key, "Ada", "UADA", Scope.admin)
    await person(make_person, make_key, "Grace", "UGRACE", Scope.admin)
    await running(slack_client, make_key, db)
    await command(slack_client, "kill-all app is down", "UADA")
    await command(slack_client, "release app is back", "UADA")
    value = await _confirm_value(slack_fake, outbox, "app is back")
    (request,) = await events(db, "slack.confirmation_requested")

    # The clock the Confirm reads, one second past the hour after the request (the audit
    # log is append-only: the request itself cannot be made older).
    def an_hour_later() -> datetime:
        return request.occurred_at + commands.CONFIRM_WITHIN + timedelta(seconds=1)

    assert an_hour_later() > utcnow()
    monkeypatch.setattr(commands, "utcnow", an_hour_later)
    await press(slack_client, CONFIRM_ACTION, value, "UGRACE")
    await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", "lapsed"), within=5)
    assert await _engaged(db)
    assert await events(db, "kill_switch.released") == []
    assert await events(db, "slack.confirmed") == []
