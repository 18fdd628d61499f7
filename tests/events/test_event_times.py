"""A report's time cannot be before its push existed (its delivery's creation): such reports
are refused by index, and rows stored before the ingest refused them (year 1, -infinity, any
time before their campaign was created) never fail nor bend the engagement figures."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, literal_column, update
from sqlalchemy.sql.elements import ColumnElement

from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.db.types import utcnow
from app.delivery.models import Delivery
from app.events.models import EngagementEvent
from app.events.parse import MAX_BEHIND
from app.events.service import MAX_SERIES, series_window
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.events.test_events_api import sent_refs, stored

_event = EngagementEvent.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def writer(make_key: KeyMaker) -> dict[str, str]:
    return bearer(await make_key(Scope.events_write))


@pytest.fixture
async def reader(make_key: KeyMaker) -> dict[str, str]:
    return bearer(await make_key(Scope.campaigns_read))


# An open's time as the fuzzer sent it; the series from it covers it.
YEAR_1 = datetime(1, 1, 1, 0, 30, tzinfo=UTC)


async def backdate(db: Runtime, campaign_id: uuid.UUID, *, sent: bool = True) -> datetime:
    """Every delivery of the campaign made and its push sent ten minutes ago, that time; or
    (not `sent`) made then, its send not recorded yet. The campaign was created a minute
    before."""
    when = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    values = {"sent_at": when if sent else None, "created_at": when}
    async with db.sessionmaker() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.campaign_id == campaign_id)  # type: ignore[arg-type]
            .values(**values)
        )
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)  # type: ignore[arg-type]
            .values(created_at=when - timedelta(minutes=1))
        )
        await session.commit()
    return when


async def test_a_report_from_year_1_or_before_the_send_is_refused_by_index(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, writer: dict[str, str]
) -> None:
    campaign_id, refs = await sent_refs(client, make_key, db)
    sent = await backdate(db, campaign_id)
    batch = [
        {"ref": refs[0], "type": "opened", "at": "0001-01-01T00:30:00Z"},
        # datetime.min: -infinity on PostgreSQL.
        {"ref": refs[1], "type": "received", "at": "0001-01-01T00:00:00Z"},
        {"ref": refs[2], "type": "converted", "at": "0001-01-01T00:00:00+00:00"},
        {"ref": refs[3], "type": "opened", "at": (sent - timedelta(hours=1)).isoformat()},
        {"ref": refs[4], "type": "opened"},  # fine
    ]
    answer = await client.post("/v1/events", json=batch, headers=writer)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["duplicates"]) == (1, 0)
    errors = {r["index"]: r["error"] for r in body["rejected"]}
    assert sorted(errors) == [0, 1, 2, 3]
    assert all(e.startswith("at:") and "before its push existed" in e for e in errors.values())
    assert [(r.delivery_id, r.type) for r in await stored(db)] == [(refs[4], "opened")]


async def test_a_report_a_little_before_the_send_is_a_phone_clock_and_kept(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, writer: dict[str, str]
) -> None:
    campaign_id, refs = await sent_refs(client, make_key, db)
    sent = await backdate(db, campaign_id)
    second = timedelta(seconds=1)
    batch = [
        {"ref": refs[0], "type": "opened", "at": (sent - MAX_BEHIND).isoformat()},
        {"ref": refs[1], "type": "opened", "at": (sent - timedelta(minutes=2)).isoformat()},
        {"ref": refs[2], "type": "opened", "at": (sent - MAX_BEHIND - second).isoformat()},
    ]
    body = (await client.post("/v1/events", json=batch, headers=writer)).json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [2]
    rows = {r.delivery_id: r.occurred_at for r in await stored(db)}
    assert rows == {refs[0]: sent - MAX_BEHIND, refs[1]: sent - timedelta(minutes=2)}


async def test_before_the_send_is_recorded_the_delivery_s_creation_bounds_a_report(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, writer: dict[str, str]
) -> None:
    campaign_id, refs = await sent_refs(client, make_key, db)
    created = await backdate(db, campaign_id, sent=False)
    batch = [
        {"ref": refs[0], "type": "received", "at": (created + timedelta(minutes=1)).isoformat()},
        {"ref": refs[1], "type": "received", "at": (created - timedelta(hours=1)).isoformat()},
        {"ref": refs[2], "type": "received", "at": "0001-01-01T00:00:00Z"},
    ]
    body = (await client.post("/v1/events", json=batch, headers=writer)).json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    assert [r.delivery_id for r in await stored(db)] == [refs[0]]


def test_the_series_window_of_an_open_in_year_1_does_not_overflow() -> None:
    now = utcnow()
    start, end = series_window(now, None, YEAR_1, MAX_SERIES)
    assert start == datetime.min.replace(tzinfo=UTC)
    assert end == datetime(1, 1, 1, 0, 30, 1, tzinfo=UTC)
    start, end = series_window(now, None, datetime.min.replace(tzinfo=UTC), MAX_SERIES)
    assert end - start == timedelta(seconds=1)


async def plant(
    db: Runtime, campaign_id: uuid.UUID, ref: int, at: datetime | ColumnElement[datetime]
) -> None:
    """An opened row as the ingest stored it before it refused impossible times."""
    async with db.sessionmaker() as session:
        await session.execute(
            insert(_event).values(
                delivery_id=ref,
                campaign_id=campaign_id,
                wave=0,
                type="opened",
                occurred_at=at,
                received_at=utcnow(),
            )
        )
        await session.commit()


def impossible(sent: datetime, is_postgres: bool) -> list[datetime | ColumnElement[datetime]]:
    found: list[datetime | ColumnElement[datetime]] = [
        YEAR_1,
        sent - timedelta(days=3),
    ]
    if is_postgres:
        found.append(literal_column("'-infinity'"))
    return found


async def test_stored_impossible_opens_alone_leave_the_engagement_empty_not_failing(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    reader: dict[str, str],
    is_postgres: bool,
) -> None:
    campaign_id, refs = await sent_refs(client, make_key, db)
    sent = await backdate(db, campaign_id)
    for ref, at in zip(refs, impossible(sent, is_postgres), strict=False):
        await plant(db, campaign_id, ref, at)
    url = f"/v1/campaigns/{campaign_id}/engagement"
    for params in ({}, {"since": YEAR_1.isoformat()}):
        answer = await client.get(url, params=params, headers=reader)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["opens_per_second"] == []
        assert [(w["time_to_open_p50"], w["time_to_open_p90"]) for w in body["waves"]] == [
            (None, None)
        ]
    default = (await client.get(url, headers=reader)).json()
    until = datetime.fromisoformat(default["until"])
    assert abs(until - utcnow()) < timedelta(minutes=1), "the last hour, not year 1's"
    assert until - datetime.fromisoformat(default["since"]) == MAX_SERIES


async def test_stored_impossible_opens_do_not_bend_the_true_ones(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    reader: dict[str, str],
    writer: dict[str, str],
    is_postgres: bool,
) -> None:
    campaign_id, refs = await sent_refs(client, make_key, db, devices=6)
    sent = await backdate(db, campaign_id)
    true = [
        {"ref": refs[0], "type": "opened", "at": (sent + timedelta(seconds=1)).isoformat()},
        {"ref": refs[1], "type": "opened", "at": (sent + timedelta(seconds=3)).isoformat()},
    ]
    assert (await client.post("/v1/events", json=true, headers=writer)).json()["accepted"] == 2
    url = f"/v1/campaigns/{campaign_id}/engagement"
    clean = (await client.get(url, headers=reader)).json()
    assert [(w["time_to_open_p50"], w["time_to_open_p90"]) for w in clean["waves"]] == [(1.0, 3.0)]
    assert [p["opens"] for p in clean["opens_per_second"]] == [1, 1]

    for ref, at in zip(refs[2:], impossible(sent, is_postgres), strict=False):
        await plant(db, campaign_id, ref, at)
    answer = await client.get(url, headers=reader)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(w["time_to_open_p50"], w["time_to_open_p90"]) for w in body["waves"]] == [(1.0, 3.0)]
    assert body["opens_per_second"] == clean["opens_per_second"]
    since = await client.get(url, params={"since": YEAR_1.isoformat()}, headers=reader)
    assert since.status_code == 200, since.text
    assert since.json()["opens_per_second"] == []
    # Nor the counts: the campaign's view and the engagement figures count the true opens.
    assert [w["opened"] for w in body["waves"]] == [2]
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=reader)).json()
    assert [w["opened"] for w in view["waves"]] == [2]


async def test_an_open_of_a_push_sent_again_later_is_kept(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, writer: dict[str, str]
) -> None:
    """A push may reach the phone, lose its connection's answer and be sent again minutes
    later (an attempt the ledger records with the later send): the first copy's open is true."""
    campaign_id, refs = await sent_refs(client, make_key, db)
    made = await backdate(db, campaign_id)
    async with db.sessionmaker() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id == refs[0])  # type: ignore[arg-type]
            .values(sent_at=utcnow())
        )
        await session.commit()
    opened = made + timedelta(minutes=1)
    batch = [{"ref": refs[0], "type": "opened", "at": opened.isoformat()}]
    body = (await client.post("/v1/events", json=batch, headers=writer)).json()
    assert (body["accepted"], body["rejected"]) == (1, []), body
