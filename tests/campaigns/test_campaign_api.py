from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.control.plane import paced
from app.db.types import utcnow
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body


async def writer(make_key: KeyMaker) -> dict[str, str]:
    return bearer(await make_key(Scope.campaigns_write, Scope.campaigns_read))


async def operator(make_key: KeyMaker) -> dict[str, str]:
    return bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_read, Scope.campaigns_operate)
    )


def without(key: str) -> dict[str, Any]:
    body = campaign_body()
    del body[key]
    return body


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("no audience", without("audience"), "audience"),
    ("no rollout", without("rollout"), "rollout"),
    ("no content", without("content"), "content"),
    ("bad kind", campaign_body(kind="blast"), "kind"),
    ("empty waves", campaign_body(rollout={"waves": []}), "rollout.waves"),
    ("zero percent", campaign_body(rollout={"waves": [{"percent": 0}]}), "rollout.waves.0.percent"),
    ("over 100", campaign_body(rollout={"waves": [{"percent": 101}]}), "rollout.waves.0.percent"),
    (
        "not increasing",
        campaign_body(rollout={"waves": [{"percent": 25}, {"percent": 20}]}),
        "rollout.waves[1].percent",
    ),
    (
        "equal percents",
        campaign_body(rollout={"waves": [{"percent": 5}, {"percent": 5}]}),
        "rollout.waves[1].percent",
    ),
    (
        "negative hold",
        campaign_body(rollout={"waves": [{"percent": 5, "hold_seconds": -1}]}),
        "rollout.waves.0.hold_seconds",
    ),
    (
        "naive start",
        campaign_body(rollout={"start_at": "2030-01-01T10:00:00", "waves": [{"percent": 5}]}),
        "rollout.start_at",
    ),
    (
        "both audiences",
        campaign_body(audience={"rules": {"everyone": True}, "segment_id": str(uuid.uuid4())}),
        "audience",
    ),
    ("empty rules", campaign_body(audience={"rules": {}}), "audience.rules"),
    ("everyone false", campaign_body(audience={"rules": {"everyone": False}}), "audience.rules"),
    (
        "unknown rule field",
        campaign_body(audience={"rules": {"field": "colour", "op": "eq", "value": "red"}}),
        "audience.rules.field",
    ),
    (
        "wrong operator",
        campaign_body(audience={"rules": {"field": "platform", "op": "gt", "value": "ios"}}),
        "audience.rules.op",
    ),
    (
        "wrong value type",
        campaign_body(
            audience={"rules": {"field": "last_seen", "op": "within_days", "value": "week"}}
        ),
        "audience.rules.value",
    ),
    (
        "unknown segment",
        campaign_body(audience={"segment_id": str(uuid.uuid4())}),
        "audience.segment_id",
    ),
    ("throttle zero", campaign_body(throttle={"per_second": 0}), "throttle.per_second"),
    ("empty title", campaign_body(content={"title": "", "body": "b"}), "content.title"),
    (
        "reserved data key",
        campaign_body(content={**campaign_body()["content"], "data": {"google.x": "1"}}),
        "content.data",
    ),
    ("unknown field", campaign_body(priority="urgent"), "priority"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
async def test_invalid_campaign_is_a_422_naming_the_field(
    client: httpx.AsyncClient, make_key: KeyMaker, case: str, body: dict[str, Any], field: str
) -> None:
    answer = await client.post("/v1/campaigns", json=body, headers=await writer(make_key))
    assert answer.status_code == 422, (case, answer.text)
    assert answer.headers["content-type"] == "application/problem+json"
    fields = [e["field"] for e in answer.json()["errors"]]
    assert any(f.startswith(field) for f in fields), (case, fields)


async def test_payload_over_the_limit_names_platform_and_size(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    content = {**campaign_body()["content"], "data": {f"k{i}": "x" * 300 for i in range(14)}}
    answer = await client.post(
        "/v1/campaigns", json=campaign_body(content=content), headers=await writer(make_key)
    )
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "ios payload is" in detail and "4096" in detail
    assert "android" in " ".join(e["message"] for e in answer.json()["errors"])


async def test_create_get_list_and_preview(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 300)
    headers = await writer(make_key)
    body = campaign_body(
        rollout={
            "waves": [
                {"percent": 1, "hold_seconds": 600},
                {"percent": 5, "hold_seconds": 600},
                {"percent": 25},
                {"percent": 100},
            ]
        }
    )
    preview = await client.post("/v1/campaigns/preview", json=body, headers=headers)
    assert preview.status_code == 200, preview.text
    plan = preview.json()
    assert plan["audience_size"] == 300
    assert [w["cumulative_devices"] for w in plan["waves"]] == [3, 15, 75, 300]
    assert [w["new_devices"] for w in plan["waves"]] == [3, 12, 60, 225]
    assert plan["guard"]["allowed"] is True
    assert 0 < plan["payload_bytes"]["ios"] < 4096

    created = await client.post("/v1/campaigns", json=body, headers=headers)
    assert created.status_code == 201
    campaign = created.json()
    assert campaign["status"] == "draft"
    assert [float(w["percent"]) for w in campaign["waves"]] == [1, 5, 25, 100]
    got = await client.get(f"/v1/campaigns/{campaign['id']}", headers=headers)
    assert got.json()["id"] == campaign["id"]
    listing = (await client.get("/v1/campaigns", headers=headers)).json()
    assert [c["id"] for c in listing["items"]] == [campaign["id"]]
    assert listing["items"][0]["waves"] == 4


async def test_list_pages_through_equal_creation_times_without_repeats_or_gaps(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = await writer(make_key)
    ids = set()
    for i in range(7):
        created = await client.post(
            "/v1/campaigns", json=campaign_body(name=f"c{i}"), headers=headers
        )
        ids.add(created.json()["id"])
    async with db.engine.begin() as conn:  # a bulk tool's campaigns can share a timestamp
        await conn.execute(update(Campaign).values(created_at=utcnow()))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/campaigns", params=params, headers=headers)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(ids)
    assert set(seen) == ids


async def test_idempotency_key(client: httpx.AsyncClient, make_key: KeyMaker) -> None:
    headers = {**await writer(make_key), "Idempotency-Key": "crm-batch-42"}
    first = await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    again = await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await client.post("/v1/campaigns", json=campaign_body(name="another"), headers=headers)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]
    listing = (await client.get("/v1/campaigns", headers=headers)).json()
    assert len(listing["items"]) == 1


async def test_lifecycle_is_audited_with_actor_and_reason(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 10)
    headers = await operator(make_key)
    campaign_id = (
        await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    ).json()["id"]
    base = f"/v1/campaigns/{campaign_id}"
    assert (await client.post(f"{base}/resume", headers=headers)).status_code == 409
    started = await client.post(f"{base}/start", json={"reason": "go"}, headers=headers)
    assert started.json()["status"] == "running"
    paused = await client.post(
        f"{base}/pause", json={"reason": "call centre busy"}, headers=headers
    )
    assert paused.status_code == 200
    assert paused.json()["campaign"]["status"] == "paused"
    assert paused.json()["in_flight_at_answer"] == 0
    resumed = await client.post(f"{base}/resume", headers=headers)
    assert resumed.json()["status"] == "running"
    cancelled = await client.post(f"{base}/cancel", json={"reason": "wrong day"}, headers=headers)
    assert cancelled.json()["campaign"]["status"] == "cancelled"
    assert (await client.post(f"{base}/resume", headers=headers)).status_code == 409
    events = (
        await client.get("/v1/audit", params={"subject_id": campaign_id}, headers=headers)
    ).json()["items"]
    by_action = {e["action"]: e for e in events}
    assert {
        "campaign.created",
        "campaign.start",
        "campaign.pause",
        "campaign.resume",
        "campaign.cancel",
    } <= set(by_action)
    assert by_action["campaign.pause"]["reason"] == "call centre busy"
    assert by_action["campaign.pause"]["before"] == {"status": "running"}
    assert by_action["campaign.pause"]["after"] == {"status": "paused"}
    assert by_action["campaign.cancel"]["actor"].startswith("key:")


async def test_kill_needs_its_scope_and_a_reason(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = await operator(make_key)
    campaign_id = (
        await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    ).json()["id"]
    url = f"/v1/campaigns/{campaign_id}/kill"
    assert (await client.post(url, json={"reason": "x"}, headers=headers)).status_code == 403
    killer = bearer(await make_key(Scope.kill))
    no_reason = await client.post(url, json={}, headers=killer)
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "reason"
    killed = await client.post(url, json={"reason": "wrong audience"}, headers=killer)
    assert killed.status_code == 200
    assert killed.json()["campaign"]["status"] == "killed"
    again = await client.post(url, json={"reason": "pressed twice"}, headers=killer)
    assert again.status_code == 200


async def test_patch_rules(client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime) -> None:
    await add_devices(db, 10)
    headers = await operator(make_key)
    campaign_id = (
        await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    ).json()["id"]
    url = f"/v1/campaigns/{campaign_id}"
    renamed = await client.patch(url, json={"name": "Statement v2"}, headers=headers)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Statement v2"
    await client.post(f"{url}/start", headers=headers)
    refused = await client.patch(url, json={"name": "late"}, headers=headers)
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["field"] == "name"
    faster = await client.patch(url, json={"throttle": {"per_second": 5}}, headers=headers)
    assert faster.status_code == 200
    assert faster.json()["throttle"] == {"per_second": 5}
    rate = await db.redis.get(f"wavecast:throttle:campaign:{campaign_id}:rate")
    assert rate is not None and float(rate) == paced(5.0)
