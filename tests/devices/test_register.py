from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import func, select

from app.auth.models import Scope
from app.devices.models import Device
from app.rollout.bucketing import device_bucket
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer

ANDROID = {"token": "fcm-token-1", "platform": "android", "locale": "pl-PL"}


def ios(token: str = "a" * 64, env: str = "production") -> dict[str, object]:
    return {"token": token, "platform": "ios", "apns_environment": env}


async def writer(make_key: KeyMaker) -> dict[str, str]:
    return bearer(await make_key(Scope.devices_write, Scope.devices_read))


async def test_register_creates_then_updates_the_same_row(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = await writer(make_key)
    first = await client.post("/v1/devices", json=ANDROID, headers=headers)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["status"] == "active"
    assert body["is_test_device"] is False
    assert body["bucket"] == device_bucket(uuid.UUID(body["id"]))

    again = await client.post(
        "/v1/devices",
        json={**ANDROID, "locale": "de-DE", "tags": ["premium", "premium", "new"]},
        headers=headers,
    )
    assert again.status_code == 200, again.text
    updated = again.json()
    assert updated["id"] == body["id"]
    assert updated["bucket"] == body["bucket"]
    assert updated["locale"] == "de-DE"
    assert updated["tags"] == ["premium", "new"]


async def test_concurrent_registrations_of_one_token_make_one_row(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = await writer(make_key)
    answers = await asyncio.gather(
        *(
            client.post("/v1/devices", json={**ANDROID, "app_version": f"1.{i}"}, headers=headers)
            for i in range(25)
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 24 + [201], [a.text for a in answers if a.status_code >= 300]
    assert len({a.json()["id"] for a in answers}) == 1
    async with db.sessionmaker() as session:
        count = (await session.execute(select(func.count()).select_from(Device))).scalar_one()
    assert count == 1


async def test_is_test_device_cannot_be_set_by_registration(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = await writer(make_key)
    answer = await client.post(
        "/v1/devices", json={**ANDROID, "is_test_device": True}, headers=headers
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["field"] == "is_test_device"
    async with db.sessionmaker() as session:
        assert (await session.execute(select(Device))).first() is None


async def test_reregistering_reactivates_an_unregistered_device(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = await writer(make_key)
    created = (await client.post("/v1/devices", json=ANDROID, headers=headers)).json()
    gone = await client.delete(f"/v1/devices/{created['id']}", headers=headers)
    assert gone.json()["status"] == "unregistered"
    back = await client.post("/v1/devices", json=ANDROID, headers=headers)
    assert back.status_code == 200
    assert back.json()["status"] == "active"


async def test_ios_needs_its_apns_environment_and_android_refuses_one(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = await writer(make_key)
    missing = await client.post(
        "/v1/devices", json={"token": "b" * 64, "platform": "ios"}, headers=headers
    )
    assert missing.status_code == 422
    assert "apns_environment" in missing.json()["detail"]
    wrong = await client.post(
        "/v1/devices", json={**ANDROID, "apns_environment": "sandbox"}, headers=headers
    )
    assert wrong.status_code == 422
    assert (await client.post("/v1/devices", json=ios(), headers=headers)).status_code == 201


async def test_get_patch_and_unregister(client: httpx.AsyncClient, make_key: KeyMaker) -> None:
    headers = await writer(make_key)
    created = (await client.post("/v1/devices", json=ios(), headers=headers)).json()
    url = f"/v1/devices/{created['id']}"
    assert (await client.get(url, headers=headers)).json()["token"] == "a" * 64

    patched = await client.patch(
        url, json={"timezone": "Europe/Warsaw", "attributes": {"segment": "sme"}}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["timezone"] == "Europe/Warsaw"
    assert patched.json()["attributes"] == {"segment": "sme"}

    bad_zone = await client.patch(url, json={"timezone": "Mars/Olympus"}, headers=headers)
    assert bad_zone.status_code == 422
    assert bad_zone.json()["errors"][0]["field"] == "timezone"
    no_env = await client.patch(url, json={"apns_environment": None}, headers=headers)
    assert no_env.status_code == 422

    deleted = await client.delete(url, headers=headers)
    assert deleted.json()["status"] == "unregistered"
    assert (await client.get(url, headers=headers)).json()["status"] == "unregistered"
    missing = await client.get(f"/v1/devices/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_list_filters_and_keyset_pagination(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = await writer(make_key)
    for i in range(7):
        await client.post(
            "/v1/devices",
            json={"token": f"t{i}", "platform": "android", "locale": "pl-PL" if i % 2 else "en-GB"},
            headers=headers,
        )
    for i in range(3):
        await client.post("/v1/devices", json=ios(f"ios{i}"), headers=headers)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, "platform": "android"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/devices", params=params, headers=headers)).json()
        seen += [d["id"] for d in page["items"]]
        assert all(d["platform"] == "android" for d in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert seen == sorted(seen)

    polish = (await client.get("/v1/devices", params={"locale": "pl-PL"}, headers=headers)).json()
    assert len(polish["items"]) == 3
    bad = await client.get("/v1/devices", params={"cursor": "!!"}, headers=headers)
    assert bad.status_code == 422
