"""On call with a key that holds only the `kill` scope: the form shows the switch and the
running campaigns read-only, and lets it stop them, as the API does."""

from __future__ import annotations

import httpx

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, campaign_status, create_and_start
from tests.ui.support import sign_in


async def test_a_kill_only_key_watches_and_stops_from_the_form(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 20)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    running = await create_and_start(client, operator, campaign_body(name="Running one"))
    other = await create_and_start(client, operator, campaign_body(name="Second running"))
    draft = await client.post(
        "/v1/campaigns", json=campaign_body(name="Draft one"), headers=operator
    )
    assert draft.status_code == 201

    key = await make_key(Scope.kill, name="on-call")
    assert (await client.get("/v1/kill-switch", headers=bearer(key))).status_code == 200
    token = await sign_in(client, key)

    listing = await client.get("/ui/campaigns")
    assert listing.status_code == 200, listing.text
    assert "Running one" in listing.text and "Draft one" not in listing.text
    page = await client.get(f"/ui/campaigns/{running}")
    assert page.status_code == 200, page.text
    assert 'href="/ui/audit"' not in page.text  # pages it may not read are not offered
    assert (await client.get("/ui/audit")).status_code == 403
    assert (await client.get("/ui/campaigns/new")).status_code == 403
    paused = await client.post(
        f"/ui/campaigns/{running}/pause", data={"csrf": token, "confirm": "yes"}
    )
    assert paused.status_code == 403  # pausing needs campaigns:operate, as in the API

    killed = await client.post(
        f"/ui/campaigns/{running}/kill",
        data={"csrf": token, "confirm": "yes", "reason": "wrong audience"},
    )
    assert killed.status_code == 303, killed.text
    assert await campaign_status(db, running) is CampaignStatus.killed

    switch_page = await client.get("/ui/kill-switch")
    assert switch_page.status_code == 200, switch_page.text
    engaged = await client.post(
        "/ui/kill-switch/engage", data={"csrf": token, "confirm": "yes", "reason": "app down"}
    )
    assert engaged.status_code == 303, engaged.text
    assert await campaign_status(db, other) is CampaignStatus.paused


async def test_engaging_an_engaged_switch_from_the_form_names_the_engagement_in_force(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    first = bearer(await make_key(Scope.kill, name="on-call ana"))
    assert (
        await client.post("/v1/kill-switch", json={"reason": "app is down"}, headers=first)
    ).status_code == 200
    token = await sign_in(client, await make_key(Scope.kill, name="on-call ben"))
    again = await client.post(
        "/ui/kill-switch/engage", data={"csrf": token, "confirm": "yes", "reason": "bad copy"}
    )
    assert again.status_code == 409
    assert "already engaged" in again.text
    assert "on-call ana" in again.text and "app is down" in again.text
