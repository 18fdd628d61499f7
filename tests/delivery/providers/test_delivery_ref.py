"""Every push carries its delivery's reference (`wavecast_ref` = the ledger row's id): in what
the FCM and APNs fakes received through the real client libraries, and in what the sandbox
recorded; the size check counts the longest reference."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from wavecast_tools.fakes.apns import ApnsFake, make_device_token
from wavecast_tools.fakes.fcm import FcmFake

from app.auth.models import Scope
from app.campaigns.schemas import REF_KEY, Content
from app.campaigns.service import check_payload_size
from app.campaigns.state import CampaignStatus
from app.delivery.models import SandboxMessage
from app.delivery.payloads import (
    ANY_CAMPAIGN_ID,
    LONGEST_REF,
    PAYLOAD_LIMIT,
    EncodedWithRef,
    apns_payload,
    apns_with_ref,
    collapse_identity,
    fcm_message,
    largest_sizes,
    size,
)
from app.devices.models import Device
from app.devices.schemas import DeviceRegistration
from app.errors import Problem
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.delivery.providers import test_end_to_end as e2e
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    deliveries,
    run_engine,
)

# The FCM and APNs fakes of the end-to-end suite, started once for this module too.
fakes = e2e.fakes


def _content(**extra: object) -> Content:
    return Content.model_validate(
        {
            "title": "Your statement is ready",
            "body": "Log in to see it.",
            "data": {"screen": "statement"},
            "locales": {"pl": {"title": "Wyciąg gotowy", "body": "Zaloguj się."}},
            **extra,
        }
    )


@pytest.mark.parametrize("ref", ["1", "4711", LONGEST_REF])
def test_the_encoded_apns_payload_is_the_payload_with_its_ref(ref: str) -> None:
    payload = apns_payload(_content(), "pl-PL")
    encoded = EncodedWithRef.of(payload).encode(ref)
    assert encoded == orjson.dumps(apns_with_ref(payload, ref))
    assert orjson.loads(encoded) == {**payload, REF_KEY: ref}


def test_the_size_check_counts_the_longest_ref() -> None:
    content = _content()
    ref_bytes = len(f',"{REF_KEY}":"{LONGEST_REF}"')
    sizes = largest_sizes(content)
    locales = (None, "pl")
    assert sizes["ios"] == max(size(apns_payload(content, loc)) for loc in locales) + ref_bytes
    # FCM's data map already exists here: the ref adds one member to it.
    # The Android tag is the longest a derived collapse identity can be.
    tag = collapse_identity(content, ANY_CAMPAIGN_ID)
    assert tag is not None and len(tag) == len("wavecast-") + 36
    assert (
        sizes["android"] == max(size(fcm_message(content, loc, tag)) for loc in locales) + ref_bytes
    )


def test_content_that_fits_only_without_the_ref_is_refused() -> None:
    base = _content(data={})
    # Fill the iOS payload to exactly the limit without the ref.
    room = PAYLOAD_LIMIT - size(apns_payload(base, None)) - len(',"pad":""')
    content = _content(data={"pad": "x" * room})
    assert size(apns_payload(content, None)) == PAYLOAD_LIMIT
    with pytest.raises(Problem) as refused:
        check_payload_size(content)
    assert "ios payload is" in str(refused.value.detail)


def test_the_ref_key_is_reserved_in_the_data_map() -> None:
    with pytest.raises(ValidationError, match="reserved by Wavecast"):
        _content(data={REF_KEY: "mine"})


async def test_fcm_and_apns_receive_each_rows_ref(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    settings = e2e.real_settings(db, fakes)
    fcm, production = fakes["fcm"], fakes["production"]
    assert isinstance(fcm, FcmFake) and isinstance(production, ApnsFake)
    await e2e._seed(
        db,
        [
            *[
                DeviceRegistration(token=f"fcm-{i}", platform="android", locale="pl-PL")  # type: ignore[arg-type]
                for i in range(12)
            ],
            *[
                DeviceRegistration(
                    token=make_device_token("production", i),
                    platform="ios",  # type: ignore[arg-type]
                    apns_environment="production",
                )
                for i in range(8)
            ],
        ],
    )
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    body = campaign_body(
        content={**_content().model_dump(exclude_none=True)},
        rollout={"waves": [{"percent": 100}]},
    )
    campaign_id = await create_and_start(client, headers, body)
    await run_engine(db, campaign_id, settings=settings)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed

    ref_by_token = await _refs_by_token(db, campaign_id)
    assert len(ref_by_token) == 20
    fcm_sends = [r for r in fcm.records() if r.endpoint == "send" and r.status == 200]
    apns_sends = [r for r in production.records() if r.endpoint == "send" and r.status == 200]
    assert len(fcm_sends) == 12 and len(apns_sends) == 8
    for record in fcm_sends:
        data = record.payload["message"]["data"]
        assert data[REF_KEY] == ref_by_token[record.token]
        assert data["screen"] == "statement", "the content's data stays beside the ref"
    for record in apns_sends:
        assert record.payload[REF_KEY] == ref_by_token[record.token]
        assert record.payload["screen"] == "statement"
    # Every message its own ref: none shared, none missing.
    seen = [r.payload["message"]["data"][REF_KEY] for r in fcm_sends]
    seen += [r.payload[REF_KEY] for r in apns_sends]
    assert sorted(seen) == sorted(ref_by_token.values())


async def test_the_sandbox_records_each_rows_ref(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 6, platform="android")
    await add_devices(db, 4, platform="ios")
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await run_engine(db, campaign_id)
    rows = {r.id: r for r in await deliveries(db, campaign_id)}
    assert len(rows) == 10 and {r.status for r in rows.values()} == {"sent"}
    async with db.sessionmaker() as session:
        recorded = list(
            (
                await session.execute(
                    select(SandboxMessage).where(SandboxMessage.campaign_id == campaign_id)  # type: ignore[arg-type]
                )
            ).scalars()
        )
    assert len(recorded) == 10
    for message in recorded:
        ref = (
            message.payload[REF_KEY]
            if message.platform == "ios"
            else message.payload["data"][REF_KEY]
        )
        assert ref == str(message.delivery_id)
        assert rows[message.delivery_id].device_id == message.device_id
    assert {m.platform for m in recorded} == {"ios", "android"}


async def _refs_by_token(db: Runtime, campaign_id: uuid.UUID) -> dict[str, str]:
    rows = await deliveries(db, campaign_id)
    async with db.sessionmaker() as session:
        tokens = dict(
            (
                await session.execute(
                    select(Device.id, Device.token).where(
                        Device.id.in_([r.device_id for r in rows])  # type: ignore[attr-defined]
                    )
                )
            ).all()
        )
    return {tokens[r.device_id]: str(r.id) for r in rows}
