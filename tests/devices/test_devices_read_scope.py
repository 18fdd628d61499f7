"""Raw push tokens, user ids and attributes are personal data: reading devices needs the
`devices:read` scope (or `admin`), never `campaigns:read`, which marketing tools hold."""

from __future__ import annotations

import httpx

from app.auth.models import Scope
from app.main import create_app
from app.ops.routes import api_routes, required_scopes
from tests.conftest import KeyMaker, bearer
from tests.ui.support import sign_in

DEVICE = {
    "token": "fcm-secret-token",
    "platform": "android",
    "user_id": "customer-42",
    "attributes": {"segment": "vip"},
}


async def test_device_reads_need_devices_read(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    writer = bearer(await make_key(Scope.devices_write))
    created = await client.post("/v1/devices", json=DEVICE, headers=writer)
    assert created.status_code == 201, created.text
    one = f"/v1/devices/{created.json()['id']}"

    for scope in (Scope.campaigns_read, Scope.devices_write, Scope.campaigns_operate):
        headers = bearer(await make_key(scope))
        for path in ("/v1/devices", one):
            refused = await client.get(path, headers=headers)
            assert refused.status_code == 403, (scope, path)
            assert "devices:read" in refused.json()["detail"]
            assert "fcm-secret-token" not in refused.text

    for scope in (Scope.devices_read, Scope.admin):
        headers = bearer(await make_key(scope))
        listing = await client.get("/v1/devices", headers=headers)
        assert listing.status_code == 200, (scope, listing.text)
        assert [d["token"] for d in listing.json()["items"]] == ["fcm-secret-token"]
        device = await client.get(one, headers=headers)
        assert device.status_code == 200
        assert device.json()["user_id"] == "customer-42"


def test_the_route_table_declares_devices_read_for_device_reads() -> None:
    app = create_app()
    reads = {
        route.path: required_scopes(route)
        for route in api_routes(app)
        if route.path in ("/v1/devices", "/v1/devices/{device_id}")
        and "GET" in (route.methods or ())
    }
    assert reads == {
        "/v1/devices": {Scope.devices_read},
        "/v1/devices/{device_id}": {Scope.devices_read},
    }


async def test_the_forms_device_list_shows_tokens_only_to_devices_read(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    writer = bearer(await make_key(Scope.devices_write))
    assert (await client.post("/v1/devices", json=DEVICE, headers=writer)).status_code == 201
    pages = {}
    for scopes in ((Scope.campaigns_read,), (Scope.campaigns_read, Scope.devices_read)):
        client.cookies.clear()
        await sign_in(client, await make_key(*scopes))
        page = await client.get("/ui/devices")
        assert page.status_code == 200
        pages[scopes[-1]] = page.text
    watcher = pages[Scope.campaigns_read]
    assert "fcm-secret-token" not in watcher
    assert 'name="token"' not in watcher and 'name="user_id"' not in watcher
    assert 'id="tokens-hidden"' in watcher
    assert "fcm-secret-token" in pages[Scope.devices_read]
    assert 'id="tokens-hidden"' not in pages[Scope.devices_read]
