"""POST /v1/events: idempotent per (ref, type), bad entries reported by index, never a 5xx."""

from __future__ import annotations

import uuid
from datetime import timedelta, timezone

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from app.auth.models import Scope
from app.db.types import utcnow
from app.events.models import EngagementEvent
from app.events.parse import MAX_EVENTS
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, deliveries, run_engine


async def sent_refs(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, devices: int = 5
) -> tuple[uuid.UUID, list[int]]:
    """A campaign sent through the sandbox; the ids of its ledger rows (the pushes' refs)."""
    await add_devices(db, devices)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await run_engine(db, campaign_id)
    rows = await deliveries(db, campaign_id)
    assert {r.status for r in rows} == {"sent"}
    return campaign_id, sorted(r.id for r in rows if r.id is not None)


async def stored(db: Runtime) -> list[EngagementEvent]:
    async with db.sessionmaker() as session:
        return list((await session.execute(select(EngagementEvent))).scalars())


@pytest.fixture
async def writer(make_key: KeyMaker) -> dict[str, str]:
    return bearer(await make_key(Scope.events_write))


async def test_a_report_counts_once_per_ref_and_type(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, writer: dict[str, str]
) -> None:
    campaign_id, refs = await sent_refs(client, make_key, db)
    first = utcnow() - timedelta(seconds=30)
    batch = [
        {"ref": refs[0], "type": "opened", "at": first.isoformat()},
        {"ref": str(refs[0]), "type": "opened"},  # the same (ref, type) again, later
        {"ref": refs[0], "type": "received", "at": first.isoformat()},
        {"ref": refs[1], "type": "converted"},
    ]
    answer = await client.post("/v1/events", json=batch, headers=writer)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 3, "duplicates": 1, "rejected": []}

    again = await client.post("/v1/events", json=batch, headers=writer)
    assert again.json() == {"accepted": 0, "duplicates": 4, "rejected": []}

    rows = await stored(db)
    assert sorted((r.delivery_id, r.type) for r in rows) == sorted(
        [(refs[0], "opened"), (refs[0], "received"), (refs[1], "converted")]
    )
    opened = next(r for r in rows if r.type == "opened")
    assert opened.occurred_at == first, "the first report's time stands"
    assert {r.campaign_id for r in rows} == {campaign_id}
    assert {r.wave for r in rows} == {0}


async def test_bad_entries_are_reported_by_index_and_the_rest_is_stored(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, writer: dict[str, str]
) -> None:
    _, refs = await sent_refs(client, make_key, db)
    future = (utcnow() + timedelta(hours=1)).isoformat()
    # A minute from now, written with another offset: stored as the same instant in UTC.
    later = (utcnow() + timedelta(minutes=1)).replace(microsecond=0)
    batch: list[object] = [
        {"ref": refs[0], "type": "opened"},  # 0 fine
        {"ref": 999_999_999, "type": "opened"},  # 1 unknown ref
        {"ref": refs[1], "type": "clicked"},  # 2 bad type
        {"ref": refs[1], "type": "opened", "at": "yesterday"},  # 3 bad at
        {"ref": refs[1], "type": "opened", "at": "2026-12-06T08:00:00"},  # 4 no offset
        {"ref": refs[1], "type": "opened", "at": future},  # 5 far in the future
        "opened",  # 6 not an object
        {"ref": -4, "type": "opened"},  # 7 bad ref
        {"ref": True, "type": "opened"},  # 8 bad ref
        {"ref": refs[1], "type": "opened", "extra": 1},  # 9 unknown field
        {  # 10 fine
            "ref": refs[2],
            "type": "received",
            "at": later.astimezone(timezone(timedelta(hours=1))).isoformat(),
        },
        {"ref": refs[3], "type": "opened", "at": "0001-01-01T00:00:00+14:00"},  # 11 no UTC
    ]
    answer = await client.post("/v1/events", json=batch, headers=writer)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    errors = {r["index"]: r["error"] for r in body["rejected"]}
    assert sorted(errors) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11]
    assert "unknown ref" in errors[1]
    assert errors[2].startswith("type:")
    assert errors[3].startswith("at:") and errors[4].startswith("at:")
    assert "future" in errors[5]
    assert "object" in errors[6]
    assert errors[7].startswith("ref:") and errors[8].startswith("ref:")
    assert "extra" in errors[9]
    assert errors[11] == "at: out of range"
    rows = await stored(db)
    assert sorted((r.delivery_id, r.type) for r in rows) == [
        (refs[0], "opened"),
        (refs[2], "received"),
    ]
    received = next(r for r in rows if r.type == "received")
    assert received.occurred_at == later and received.occurred_at.utcoffset() == timedelta(0)


async def test_ndjson_lines_are_indexed_by_line_and_a_non_json_line_is_one_rejection(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, writer: dict[str, str]
) -> None:
    _, refs = await sent_refs(client, make_key, db)
    lines = [
        orjson.dumps({"ref": refs[0], "type": "opened"}),
        b"{not json",
        b"",  # blank: skipped, still counted
        orjson.dumps({"ref": refs[1], "type": "opened"}),
        orjson.dumps([1, 2]),
        orjson.dumps({"ref": 123_456_789_012, "type": "opened"}),
    ]
    answer = await client.post(
        "/v1/events",
        content=b"\n".join(lines) + b"\n",
        headers={**writer, "Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["error"].split(" ")[0]) for r in body["rejected"]] == [
        (1, "not"),
        (4, "an"),
        (5, "unknown"),
    ]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "words"),
    [
        (b"", "application/json", 400, "empty"),
        (b"  \n ", "application/x-ndjson", 400, "empty"),
        (b"{not json", "application/json", 400, "not JSON"),
        (b'{"ref": 1, "type": "opened"}', "application/json", 400, "array"),
        (b'[{"ref": 1, "type": "opened"}]', "text/plain", 415, "application/x-ndjson"),
        (b'[{"ref": 1, "type": "opened"}]', "application/xml", 415, "application/json"),
    ],
)
async def test_a_body_that_is_no_batch_is_refused_whole(
    client: httpx.AsyncClient,
    db: Runtime,
    writer: dict[str, str],
    content: bytes,
    content_type: str,
    status: int,
    words: str,
) -> None:
    answer = await client.post(
        "/v1/events", content=content, headers={**writer, "Content-Type": content_type}
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert words in answer.json()["detail"]


async def test_more_events_than_a_request_takes_is_413(
    client: httpx.AsyncClient, db: Runtime, writer: dict[str, str]
) -> None:
    line = b'{"ref":1,"type":"opened"}'
    answer = await client.post(
        "/v1/events",
        content=b"\n".join([line] * (MAX_EVENTS + 1)),
        headers={**writer, "Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 413, answer.text
    assert str(MAX_EVENTS) in answer.json()["detail"]


async def test_reporting_needs_the_events_write_scope(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    batch = [{"ref": 1, "type": "opened"}]
    reader = bearer(await make_key(Scope.campaigns_read, Scope.devices_write))
    refused = await client.post("/v1/events", json=batch, headers=reader)
    assert refused.status_code == 403
    assert "events:write" in refused.json()["detail"]
    assert (await client.post("/v1/events", json=batch)).status_code == 401
    allowed = await client.post(
        "/v1/events", json=batch, headers=bearer(await make_key(Scope.events_write))
    )
    assert allowed.status_code == 200
    assert allowed.json()["rejected"][0]["index"] == 0
    assert len(await stored(db)) == 0
    counted = await _count(db)
    assert counted == 0


async def _count(db: Runtime) -> int:
    async with db.sessionmaker() as session:
        return int(
            (await session.execute(select(func.count()).select_from(EngagementEvent))).scalar_one()
        )
