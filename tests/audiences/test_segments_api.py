from __future__ import annotations

import dataclasses

import httpx

from app.auth.models import Scope
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body

POLISH = {"field": "locale", "op": "starts_with", "value": "pl"}


async def test_segment_crud_estimate_and_audit(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 30)  # two in three are pl-PL
    await add_devices(db, 6, platform="ios")
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_read))
    created = await client.post(
        "/v1/segments", json={"name": "Polish", "rules": POLISH}, headers=headers
    )
    assert created.status_code == 201, created.text
    segment = created.json()
    assert segment["rules"] == POLISH

    estimate = await client.post(
        "/v1/audience/estimate", json={"segment_id": segment["id"]}, headers=headers
    )
    assert estimate.json() == {"count": 24, "by_platform": {"android": 20, "ios": 4}}
    inline = await client.post(
        "/v1/audience/estimate", json={"rules": {"everyone": True}}, headers=headers
    )
    assert inline.json()["count"] == 36

    duplicate = await client.post(
        "/v1/segments", json={"name": "Polish", "rules": POLISH}, headers=headers
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["errors"][0]["field"] == "name"

    url = f"/v1/segments/{segment['id']}"
    android_only = {"all": [POLISH, {"field": "platform", "op": "eq", "value": "android"}]}
    patched = await client.patch(url, json={"rules": android_only}, headers=headers)
    assert patched.status_code == 200
    assert (await client.get(url, headers=headers)).json()["rules"] == android_only
    assert [s["name"] for s in (await client.get("/v1/segments", headers=headers)).json()] == [
        "Polish"
    ]

    # A campaign copies the rules: deleting the segment later changes nothing for it.
    campaign = await client.post(
        "/v1/campaigns",
        json=campaign_body(audience={"segment_id": segment["id"]}),
        headers=headers,
    )
    assert campaign.status_code == 201
    assert campaign.json()["audience"]["rules"] == android_only
    assert (await client.delete(url, headers=headers)).status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404
    kept = await client.get(f"/v1/campaigns/{campaign.json()['id']}", headers=headers)
    assert kept.json()["audience"]["rules"] == android_only

    actions = [
        e["action"]
        for e in (
            await client.get("/v1/audit", params={"subject_type": "segment"}, headers=headers)
        ).json()["items"]
    ]
    assert actions == ["segment.deleted", "segment.updated", "segment.created"]


async def test_bad_rules_are_422_with_the_path_of_the_bad_node(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_read))
    answer = await client.post(
        "/v1/segments",
        json={
            "name": "broken",
            "rules": {"all": [POLISH, {"field": "platform", "op": "eq", "value": "windows"}]},
        },
        headers=headers,
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "rules.all[1].value"
    empty = await client.post("/v1/audience/estimate", json={"rules": {}}, headers=headers)
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"].startswith("body.rules")
    neither = await client.post("/v1/audience/estimate", json={}, headers=headers)
    assert neither.status_code == 422


async def test_segment_listing_is_capped_and_pages_by_name(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    writer = bearer(await make_key(Scope.campaigns_write))
    for name in ("c", "a", "d", "b"):
        created = await client.post(
            "/v1/segments", json={"name": name, "rules": {"everyone": True}}, headers=writer
        )
        assert created.status_code == 201
    small = dataclasses.replace(db, settings=db.settings.model_copy(update={"page_size_max": 3}))
    capped = create_app(small.settings, runtime=small)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=capped), base_url="http://t"
    ) as c:
        reader = bearer(await make_key(Scope.campaigns_read))
        first = (await c.get("/v1/segments?limit=100", headers=reader)).json()
        assert [s["name"] for s in first] == ["a", "b", "c"]
        rest = (await c.get("/v1/segments?after=c", headers=reader)).json()
        assert [s["name"] for s in rest] == ["d"]
        one = (await c.get("/v1/segments?limit=1&after=a", headers=reader)).json()
        assert [s["name"] for s in one] == ["b"]
        assert (await c.get("/v1/segments?limit=0", headers=reader)).status_code == 422
