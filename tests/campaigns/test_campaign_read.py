"""`GET /v1/campaigns/{id}` answers from one read (`service.read_view`), built straight into
JSON. It must say exactly what the ORM-built view (`service.view`, what every edit and
transition answers) says: same fields, same values, same JSON types, in every state a
campaign passes through. On both backends."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.responses import JSONResponse
from sqlalchemy import update

from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.campaigns import service
from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus
from app.checks.models import WaveCheckResult
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import retention
from app.errors import Problem
from app.runtime import Runtime
from tests.checks.support import drive
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, deliveries, run_engine

OPERATOR = (Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
RETENTION_DAYS = 30


def same_json(fast: Any, full: Any, where: str = "$") -> None:
    """Equal values of the same JSON types all the way down (1 is not 1.0, nor True)."""
    assert type(fast) is type(full), f"{where}: {fast!r} ({type(fast).__name__}) != {full!r}"
    if isinstance(full, dict):
        assert list(fast) == list(full), f"{where}: fields {list(fast)} != {list(full)}"
        for key in full:
            same_json(fast[key], full[key], f"{where}.{key}")
    elif isinstance(full, list):
        assert len(fast) == len(full), f"{where}: {len(fast)} items != {len(full)}"
        for index, (a, b) in enumerate(zip(fast, full, strict=True)):
            same_json(a, b, f"{where}[{index}]")
    else:
        assert fast == full, f"{where}: {fast!r} != {full!r}"


async def full_view(db: Runtime, campaign_id: uuid.UUID) -> Any:
    """What the route answered before it read in one go: the ORM view, validated against
    the response model and encoded by FastAPI's JSONResponse."""
    async with db.sessionmaker() as session:
        view = await service.view(session, await service.get(session, campaign_id))
    return json.loads(bytes(JSONResponse(view.model_dump(mode="json")).body))


async def assert_same_view(
    db: Runtime, client: httpx.AsyncClient, headers: dict[str, str], campaign_id: uuid.UUID
) -> dict[str, Any]:
    full = await full_view(db, campaign_id)
    async with db.engine.connect() as connection:
        fast = json.loads(await service.read_view(connection, campaign_id))
    same_json(fast, full)
    answer = await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    same_json(answer.json(), full)
    result: dict[str, Any] = full
    return result


@pytest.fixture
async def headers(make_key: KeyMaker) -> dict[str, str]:
    return bearer(await make_key(*OPERATOR))


async def test_a_draft_with_every_optional_part_reads_the_same(
    client: httpx.AsyncClient, headers: dict[str, str], db: Runtime
) -> None:
    body = campaign_body(
        name="Zażółć gęślą jaźń",
        rollout={
            "waves": [{"percent": 12.5, "hold_seconds": 600}, {"percent": 100}],
            "checks": [
                {
                    "name": "api health",
                    "http": {"url": "http://127.0.0.1:9/health", "json_field": "p99_ms"},
                    "pass_when": {"lte": 800},
                }
            ],
            "local_time": "09:30",
            "start_at": (utcnow() + timedelta(days=2)).isoformat(),
        },
        throttle={"per_second": 250, "max_opens_per_second": 40},
        quiet_hours={"start": "21:00", "end": "08:00"},
        expires_at=(utcnow() + timedelta(days=3)).isoformat(),
        failure_threshold_percent="2.5",
    )
    created = await client.post("/v1/campaigns", json=body, headers=headers)
    assert created.status_code == 201, created.text
    view = await assert_same_view(db, client, headers, uuid.UUID(created.json()["id"]))
    assert view["status"] == "draft" and view["current_wave"] is None
    assert view["waves"][0]["percent"] == "12.5000" and view["checks"]
    assert view["quiet_hours"] == "21:00-08:00" and view["local_time"] == "09:30"
    assert view["failure_threshold_percent"] == "2.5000"
    assert view["quiet_hours"] == "21:00-08:00" and view["local_time"] == "09:30"
    assert view["failure_threshold_percent"] == "2.5000"
    assert view["throttle"]["max_opens_per_second"] == 40
    assert view["throttle"]["effective_reason"].startswith("no estimate yet")


async def test_a_running_campaign_with_waves_out_events_and_check_results_reads_the_same(
    client: httpx.AsyncClient, make_key: KeyMaker, headers: dict[str, str], db: Runtime
) -> None:
    await add_devices(db, 20)
    body = campaign_body(
        rollout={"waves": [{"percent": 50, "hold_seconds": 3600}, {"percent": 100}]},
        throttle={"per_second": 100000, "max_opens_per_second": 5000},
    )
    campaign_id = await create_and_start(client, headers, body)
    scheduled = await assert_same_view(db, client, headers, campaign_id)
    assert scheduled["next_wave_at"] is not None and scheduled["current_wave"] is None

    # The first wave sent and holding, an opens-budget estimate, engagement reported.
    status, _ = await drive(db, campaign_id, ticks=4)
    assert status == CampaignStatus.running
    rows = sorted(await deliveries(db, campaign_id), key=lambda r: r.id or 0)
    assert len(rows) == 10
    writer = bearer(await make_key(Scope.events_write))
    events = [{"ref": r.id, "type": "received"} for r in rows[:7]]
    events += [{"ref": r.id, "type": "opened"} for r in rows[:3]]
    events += [{"ref": rows[0].id, "type": "converted"}]
    answer = await client.post("/v1/events", json=events, headers=writer)
    assert answer.status_code == 200 and answer.json()["rejected"] == [], answer.text
    now = utcnow()
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)  # type: ignore[arg-type]
            .values(effective_per_second=123.25, effective_reason="opens 0.3 of sends")
        )
        # Two runs of one check (the newer is shown), one of another, and one of an earlier
        # wave (not shown).
        session.add_all(
            [
                WaveCheckResult(
                    campaign_id=campaign_id,
                    wave=0,
                    check_name="latency",
                    result="fail",
                    value=900.0,
                    detail="lte 800",
                    observed_at=now - timedelta(seconds=5),
                ),
                WaveCheckResult(
                    campaign_id=campaign_id,
                    wave=0,
                    check_name="latency",
                    result="pass",
                    value=1e-05,
                    detail="lte 800",
                    observed_at=now,
                ),
                WaveCheckResult(
                    campaign_id=campaign_id,
                    wave=0,
                    check_name="errors",
                    result="inconclusive",
                    value=None,
                    detail="no series",
                    observed_at=now,
                ),
                WaveCheckResult(
                    campaign_id=campaign_id,
                    wave=1,
                    check_name="latency",
                    result="pass",
                    value=1.0,
                    detail=None,
                    observed_at=now,
                ),
            ]
        )
    view = await assert_same_view(db, client, headers, campaign_id)
    assert view["status"] == "running" and view["current_wave"] == 0
    first = view["waves"][0]
    assert (first["sent"], first["received"], first["opened"], first["converted"]) == (10, 7, 3, 1)
    assert first["open_rate"] == 0.3 and first["hold_until"] is not None
    assert view["next_wave_at"] == first["hold_until"]
    assert [(r["name"], r["result"]) for r in view["check_results"]] == [
        ("errors", "inconclusive"),
        ("latency", "pass"),
    ]
    assert view["throttle"]["effective_per_second"] == 123.25


async def test_a_pruned_campaign_reads_its_kept_summary_the_same(
    client: httpx.AsyncClient, make_key: KeyMaker, headers: dict[str, str], db: Runtime
) -> None:
    await add_devices(db, 12)
    body = campaign_body(rollout={"waves": [{"percent": 40, "hold_seconds": 0}, {"percent": 100}]})
    campaign_id = await create_and_start(client, headers, body)
    await run_engine(db, campaign_id)
    rows = await deliveries(db, campaign_id)
    writer = bearer(await make_key(Scope.events_write))
    events = [{"ref": r.id, "type": "opened"} for r in rows[:5]]
    answer = await client.post("/v1/events", json=events, headers=writer)
    assert answer.status_code == 200 and answer.json()["rejected"] == [], answer.text
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)  # type: ignore[arg-type]
            .values(finished_at=utcnow() - timedelta(days=RETENTION_DAYS + 1))
        )
    whole = await assert_same_view(db, client, headers, campaign_id)
    assert whole["status"] == "completed"

    pruned = await retention.prune(
        db.sessionmaker, SYSTEM, retention_days=RETENTION_DAYS, now=utcnow()
    )

    assert [p.campaign_id for p in pruned] == [campaign_id]
    assert await deliveries(db, campaign_id) == []
    view = await assert_same_view(db, client, headers, campaign_id)
    assert view["waves"] == whole["waves"]
    assert sum(w["sent"] for w in view["waves"]) == 12
    assert sum(w["opened"] for w in view["waves"]) == 5


async def test_an_unknown_campaign_is_404_both_ways(
    client: httpx.AsyncClient, headers: dict[str, str], db: Runtime
) -> None:
    missing = uuid.uuid4()
    async with db.engine.connect() as connection:
        with pytest.raises(Problem) as raised:
            await service.read_view(connection, missing)
    assert raised.value.status == 404
    answer = await client.get(f"/v1/campaigns/{missing}", headers=headers)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert str(missing) in answer.json()["detail"]
