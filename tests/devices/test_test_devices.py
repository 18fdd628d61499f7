from __future__ import annotations

import httpx

from app.auth.models import Scope
from tests.conftest import KeyMaker, bearer


async def test_only_admin_marks_test_devices_and_it_is_audited(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    writer = bearer(
        await make_key(Scope.devices_write, Scope.campaigns_read, Scope.campaigns_write)
    )
    admin = bearer(await make_key(Scope.admin, name="ops admin"))
    device = (
        await client.post("/v1/devices", json={"token": "t", "platform": "android"}, headers=writer)
    ).json()
    url = f"/v1/devices/{device['id']}/test-device"

    refused = await client.put(url, headers=writer)
    assert refused.status_code == 403
    assert "admin" in refused.json()["detail"]

    marked = await client.put(url, json={"reason": "QA phone"}, headers=admin)
    assert marked.status_code == 200
    assert marked.json()["is_test_device"] is True
    # Re-registering never clears (or sets) the flag.
    again = await client.post(
        "/v1/devices", json={"token": "t", "platform": "android"}, headers=writer
    )
    assert again.json()["is_test_device"] is True

    unmarked = await client.delete(url, headers=admin)
    assert unmarked.json()["is_test_device"] is False

    events = (
        await client.get("/v1/audit", params={"subject_type": "device"}, headers=admin)
    ).json()["items"]
    assert [e["action"] for e in events] == ["device.test_unmarked", "device.test_marked"]
    assert events[1]["reason"] == "QA phone"
    assert events[1]["actor"].endswith("(ops admin)")
    assert events[1]["before"] == {"is_test_device": False}
    assert events[1]["after"] == {"is_test_device": True}
