"""What the bulk import stores is what a single registration stores, byte for byte, including
values COPY's text format must escape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sqlmodel import select

from app.devices import importer
from app.devices import service as devices_service
from app.devices.models import Device
from app.devices.schemas import DeviceRegistration
from app.rollout.bucketing import device_bucket
from app.runtime import Runtime

_AWKWARD: list[dict[str, Any]] = [
    {
        "token": "back\\slash\\N",
        "platform": "android",
        "user_id": "tab\there\nnew\rline \\N \\ end",
        "locale": "en_GB",
        "timezone": "Europe/Warsaw",
        "app_version": "5.12.1-beta.2",
        "tags": [" vip ", "vip", "zażółć", 'quote"d', "back\\slash"],
        "attributes": {"city": "Kraków\t\\n", "age": 41, "score": 0.1, "ok": True, "none": None},
    },
    {"token": "ios-token", "platform": "ios", "apns_environment": "sandbox", "tags": []},
    {"token": "big-version", "platform": "android", "app_version": "1.2.3.4567890"},
]
_COLUMNS = ("platform", "user_id", "locale", "timezone", "app_version", "app_version_key")
_COLUMNS += ("tags", "attributes", "apns_environment", "status", "is_test_device")


async def _stream(rows: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    yield b"\n".join(json.dumps(r).encode() for r in rows)


def _stored(device: Device) -> dict[str, Any]:
    return {name: getattr(device, name) for name in _COLUMNS}


async def test_import_stores_what_registration_stores(db: Runtime) -> None:
    result = await importer.import_stream(db.sessionmaker, _stream(_AWKWARD))
    assert (result.created, result.updated, result.rejected_total) == (3, 0, 0)
    async with db.sessionmaker() as session:
        imported = {d.token: _stored(d) for d in (await session.exec(select(Device))).all()}
        for device in (await session.exec(select(Device))).all():
            await session.delete(device)
        await session.commit()
    async with db.sessionmaker() as session:
        for row in _AWKWARD:
            await devices_service.register(session, DeviceRegistration.model_validate(row))
        await session.commit()
        registered = {d.token: _stored(d) for d in (await session.exec(select(Device))).all()}
    assert imported == registered
    assert imported["back\\slash\\N"]["tags"] == ["vip", "zażółć", 'quote"d', "back\\slash"]
    assert imported["back\\slash\\N"]["locale"] == "en-GB"
    assert imported["big-version"]["app_version_key"] is None


async def test_a_second_import_updates_and_keeps_ids_and_buckets(db: Runtime) -> None:
    await importer.import_stream(db.sessionmaker, _stream(_AWKWARD))
    async with db.sessionmaker() as session:
        first = {d.token: (d.id, d.bucket) for d in (await session.exec(select(Device))).all()}
    changed = [{**row, "user_id": "changed"} for row in _AWKWARD]
    result = await importer.import_stream(db.sessionmaker, _stream(changed))
    assert (result.created, result.updated) == (0, 3)
    async with db.sessionmaker() as session:
        devices = (await session.exec(select(Device))).all()
    assert {d.token: (d.id, d.bucket) for d in devices} == first
    assert {d.user_id for d in devices} == {"changed"}
    assert all(d.bucket == device_bucket(d.id) and d.id.version == 7 for d in devices)
