"""The form's device list cannot be used to ask whether a token or a user id is registered
without `devices:read`: the search itself is refused, not only the fields hidden."""

from __future__ import annotations

import httpx

from app.auth.models import Scope
from tests.conftest import KeyMaker, bearer
from tests.ui.support import sign_in

DEVICE = {"token": "fcm-probe-token", "platform": "android", "user_id": "u-42"}


async def test_searching_by_token_or_user_id_needs_devices_read(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    writer = bearer(await make_key(Scope.devices_write))
    assert (await client.post("/v1/devices", json=DEVICE, headers=writer)).status_code == 201
    await sign_in(client, await make_key(Scope.campaigns_read))
    for query in ({"token": "fcm-probe-token"}, {"user_id": "u-42"}):
        refused = await client.get("/ui/devices", params=query)
        assert refused.status_code == 403, refused.text
        assert "fcm-probe-token" not in refused.text
    assert (await client.get("/ui/devices")).status_code == 200
    client.cookies.clear()
    await sign_in(client, await make_key(Scope.campaigns_read, Scope.devices_read))
    found = await client.get("/ui/devices", params={"token": "fcm-probe-token"})
    assert found.status_code == 200
    assert "fcm-probe-token" in found.text
