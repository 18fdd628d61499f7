"""Collapse identities: every push of a campaign carries one (APNs `apns-collapse-id`, Android
`notification.tag`), so a push sent again after a crash replaces the first on the phone.

The wire tests drive a campaign through the API, the engine and the real firebase-admin and
aioapns clients into the FCM and APNs fakes, and read what the fakes received."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from wavecast_tools.fakes.apns import ApnsFake, make_device_token
from wavecast_tools.fakes.apns_validation import MAX_COLLAPSE_ID_BYTES
from wavecast_tools.fakes.faults import FaultRule
from wavecast_tools.fakes.fcm import FcmFake

from app.auth.models import Scope
from app.campaigns.schemas import Content
from app.campaigns.state import CampaignStatus
from app.delivery.payloads import collapse_identity, fcm_message
from app.devices.schemas import DeviceRegistration
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.delivery.providers.test_end_to_end import _seed, fakes, real_settings
from tests.support import campaign_body, campaign_status, create_and_start, deliveries, run_engine

__all__ = ["fakes"]  # the module-scoped fixture, shared with the end-to-end tests

BASE = {"title": "Your statement is ready", "body": "Log in to see it."}


def _content(**fields: Any) -> Content:
    return Content.model_validate({**BASE, **fields})


# Pure: what each campaign's content asks for.


def test_by_default_the_identity_is_derived_from_the_campaign() -> None:
    campaign_id = str(uuid.uuid4())
    assert collapse_identity(_content(), campaign_id) == f"wavecast-{campaign_id}"


@given(st.uuids())
def test_a_derived_identity_fits_apns_limit_and_differs_per_campaign(campaign: uuid.UUID) -> None:
    identity = collapse_identity(_content(), str(campaign))
    assert identity is not None
    assert len(identity.encode()) <= MAX_COLLAPSE_ID_BYTES
    assert identity != collapse_identity(_content(), str(uuid.UUID(int=campaign.int ^ 1)))


def test_an_override_a_collapse_key_and_off() -> None:
    campaign_id = str(uuid.uuid4())
    assert collapse_identity(_content(collapse_id="statement-nov"), campaign_id) == "statement-nov"
    # A collapse_key already set apns-collapse-id before identities existed: it stays the
    # campaign's identity, now on Android too.
    assert collapse_identity(_content(collapse_key="nov"), campaign_id) == "nov"
    both = _content(collapse_key="nov", collapse_id="statement")
    assert collapse_identity(both, campaign_id) == "statement"
    assert collapse_identity(_content(collapse_id=None), campaign_id) is None


def test_the_android_tag_is_the_identity() -> None:
    message = fcm_message(_content(), None, "wavecast-x")
    assert message["android"]["notification"] == {"tag": "wavecast-x"}
    assert "notification" not in fcm_message(_content(), None, None)["android"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "at least 1 character"),
        ("x" * 65, "at most 64 characters"),
        ("two words", "should match pattern"),
        ("zażółć", "should match pattern"),
        ("line\nbreak", "should match pattern"),
        (7, "valid string"),
    ],
)
def test_a_bad_override_is_refused_naming_the_field(value: object, problem: str) -> None:
    with pytest.raises(ValidationError) as raised:
        _content(collapse_id=value)
    (error,) = raised.value.errors()
    assert error["loc"] == ("collapse_id",)
    assert problem in error["msg"]


def test_off_with_a_collapse_key_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        _content(collapse_id=None, collapse_key="nov")
    (error,) = raised.value.errors()
    assert error["loc"] == ("collapse_id",)
    assert "drop one of them" in error["msg"]


async def test_the_api_answers_a_bad_override_with_a_422_naming_it(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write))
    body = campaign_body(content={**BASE, "collapse_id": "x" * 65})
    answer = await client.post("/v1/campaigns", json=body, headers=headers)
    assert answer.status_code == 422
    assert "collapse_id" in answer.text


async def test_the_campaign_shows_its_collapse_id(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_read))
    for given_id, shown in ((None, "{campaign}"), ("statement", "statement")):
        content = dict(BASE) if given_id is None else {**BASE, "collapse_id": given_id}
        created = await client.post(
            "/v1/campaigns", json=campaign_body(content=content), headers=headers
        )
        assert created.status_code == 201, created.text
        view = (await client.get(f"/v1/campaigns/{created.json()['id']}", headers=headers)).json()
        assert view["content"]["collapse_id"] == shown


# On the wire.


def _devices() -> list[DeviceRegistration]:
    return [
        *(DeviceRegistration(token=f"fcm-{i}", platform="android") for i in range(6)),  # type: ignore[arg-type]
        *(
            DeviceRegistration(
                token=make_device_token("production", i),
                platform="ios",  # type: ignore[arg-type]
                apns_environment="production",
            )
            for i in range(4)
        ),
    ]


def _sent(fcm: FcmFake, production: ApnsFake) -> tuple[list[Any], list[Any]]:
    android = [r for r in fcm.records() if r.endpoint == "send"]
    ios = [r for r in production.records() if r.endpoint == "send"]
    return android, ios


def _tag(record: Any) -> str | None:
    notification = json.loads(record.body)["message"]["android"].get("notification", {})
    tag: str | None = notification.get("tag")
    return tag


async def _run(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    fakes: dict[str, object],
    content: dict[str, Any],
    *,
    faults: tuple[tuple[str, FaultRule], ...] = (),
) -> tuple[uuid.UUID, list[Any], list[Any]]:
    settings = real_settings(db, fakes)
    fcm, production = fakes["fcm"], fakes["production"]
    assert isinstance(fcm, FcmFake) and isinstance(production, ApnsFake)
    for name, rule in faults:
        fake = fakes[name]
        assert isinstance(fake, FcmFake | ApnsFake)
        fake.rulebook.add(rule)
    await _seed(db, _devices())
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(content=content, rollout={"waves": [{"percent": 100}]}),
    )
    await run_engine(db, campaign_id, settings=settings, max_ticks=400)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed
    assert {r.status for r in await deliveries(db, campaign_id)} == {"sent"}
    android, ios = _sent(fcm, production)
    assert len({r.token for r in android}) == 6 and len({r.token for r in ios}) == 4
    return campaign_id, android, ios


async def test_every_push_carries_the_campaigns_identity_by_default(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    campaign_id, android, ios = await _run(client, make_key, db, fakes, dict(BASE))
    expected = f"wavecast-{campaign_id}"
    assert {_tag(r) for r in android} == {expected}
    assert {r.headers.get("apns-collapse-id") for r in ios} == {expected}


async def test_a_push_sent_again_carries_the_same_identity(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    """The connection drops with the first request of one Android and one iOS device in
    flight: whether or not the phone got it, the sender sends it again, and the second push
    carries the first one's identity, so the phone shows one notification."""
    ios_token = make_device_token("production", 0)
    campaign_id, android, ios = await _run(
        client,
        make_key,
        db,
        fakes,
        dict(BASE),
        faults=(
            ("fcm", FaultRule(action="drop", token="fcm-0", count=1)),
            ("production", FaultRule(action="drop", token=ios_token, count=1)),
        ),
    )
    expected = f"wavecast-{campaign_id}"
    again_android = [r for r in android if r.token == "fcm-0"]
    again_ios = [r for r in ios if r.token == ios_token]
    assert len(again_android) == 2 and len(again_ios) == 2
    assert [_tag(r) for r in again_android] == [expected, expected]
    assert [r.headers.get("apns-collapse-id") for r in again_ios] == [expected, expected]


async def test_the_campaigns_own_identity_goes_on_the_wire(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    _, android, ios = await _run(
        client, make_key, db, fakes, {**BASE, "collapse_id": "statement-2026-11"}
    )
    assert {_tag(r) for r in android} == {"statement-2026-11"}
    assert {r.headers.get("apns-collapse-id") for r in ios} == {"statement-2026-11"}


async def test_off_sends_no_identity(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fakes: dict[str, object]
) -> None:
    _, android, ios = await _run(client, make_key, db, fakes, {**BASE, "collapse_id": None})
    assert {_tag(r) for r in android} == {None}
    assert all("apns-collapse-id" not in r.headers for r in ios)
