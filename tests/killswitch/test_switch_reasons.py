"""The switch never loses a reason: engaging it again with another reason is refused with
the engagement in force, and releasing it leaves every paused campaign's reason in place."""

from __future__ import annotations

import httpx

from app.auth.models import Scope
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start


async def test_engaging_again_with_another_reason_names_the_engagement_in_force(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    first = bearer(await make_key(Scope.kill, name="on-call ana"))
    second = bearer(await make_key(Scope.kill, name="on-call ben"))
    engaged = await client.post("/v1/kill-switch", json={"reason": "app is down"}, headers=first)
    assert engaged.status_code == 200, engaged.text

    again = await client.post("/v1/kill-switch", json={"reason": "bad copy"}, headers=second)
    assert again.status_code == 409, again.text
    problem = again.json()
    assert "on-call ana" in problem["engaged_by"]
    assert problem["engaged_reason"] == "app is down"
    assert problem["engaged_at"] == engaged.json()["changed_at"].replace("Z", "+00:00")
    assert "on-call ana" in problem["detail"] and "app is down" in problem["detail"]

    state = (await client.get("/v1/kill-switch", headers=first)).json()
    assert state["reason"] == "app is down"
    # Asked again with the reason in force, it confirms the stop (as after a 503).
    confirmed = await client.post("/v1/kill-switch", json={"reason": "app is down"}, headers=second)
    assert confirmed.status_code == 200, confirmed.text
    assert "on-call ana" in confirmed.json()["changed_by"]


async def test_release_leaves_each_paused_campaign_its_reason(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 20)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    killer = bearer(await make_key(Scope.kill))
    admin = bearer(await make_key(Scope.admin))
    by_switch = await create_and_start(client, operator, campaign_body())
    by_hand = await create_and_start(client, operator, campaign_body())
    paused = await client.post(
        f"/v1/campaigns/{by_hand}/pause", json={"reason": "typo in title"}, headers=operator
    )
    assert paused.status_code == 200
    assert (
        await client.post("/v1/kill-switch", json={"reason": "app is down"}, headers=killer)
    ).status_code == 200
    released = await client.post(
        "/v1/kill-switch/release", json={"reason": "app is back"}, headers=admin
    )
    assert released.status_code == 200, released.text

    def reason(campaign: httpx.Response) -> tuple[str, str]:
        body = campaign.json()
        return body["status"], body["status_reason"]

    assert reason(await client.get(f"/v1/campaigns/{by_switch}", headers=operator)) == (
        "paused",
        "global kill switch engaged: app is down",
    )
    assert reason(await client.get(f"/v1/campaigns/{by_hand}", headers=operator)) == (
        "paused",
        "typo in title",
    )
