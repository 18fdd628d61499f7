"""The production staging policy's floors (settings), `GET /v1/policy`, and the audit record
a deployment writes when it starts with another policy than the last one."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlmodel import col, select

from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.guard.deployment_policy import effective_policy
from app.guard.policy_log import ACTION, record_if_changed
from app.main import create_app
from app.runtime import Runtime
from app.settings import ProviderMode, Settings
from tests.conftest import KeyMaker, bearer
from workers.main import build_worker

PG = "postgresql://u@db/wavecast"
REDIS = "redis://redis:6379/0"


def _production(tmp_path: Path, **overrides: Any) -> Settings:
    account = tmp_path / "sa.json"
    account.write_text('{"type": "service_account", "project_id": "bank-prod"}')
    values: dict[str, Any] = {
        "env": "production",
        "database_url": PG,
        "redis_url": REDIS,
        "provider": "real",
        "key_pepper": "pepper",
        "fcm_credentials": account,
        "production_fcm_projects": ["bank-prod"],
    }
    return Settings(**(values | overrides))


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"max_first_wave_percent": "50.01"}, "WAVECAST_MAX_FIRST_WAVE_PERCENT=50.01"),
        ({"max_first_wave_percent": "100"}, "WAVECAST_MAX_FIRST_WAVE_PERCENT=100"),
        ({"min_hold_seconds": 59}, "WAVECAST_MIN_HOLD_SECONDS=59"),
        ({"min_hold_seconds": 0}, "WAVECAST_MIN_HOLD_SECONDS=0"),
    ],
)
def test_production_refuses_a_policy_below_its_floors_naming_the_variable(
    tmp_path: Path, overrides: dict[str, Any], variable: str
) -> None:
    with pytest.raises(ValidationError, match=variable):
        _production(tmp_path, **overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_first_wave_percent": "50", "min_hold_seconds": 60},
        {"max_first_wave_percent": "0.5", "min_hold_seconds": 86_400},
        {},
    ],
)
def test_production_accepts_the_floors_and_anything_tighter(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    settings = _production(tmp_path, **overrides)
    assert settings.is_production and not settings.test_devices_only


def test_outside_production_the_policy_may_be_loose() -> None:
    loose = Settings(max_first_wave_percent=Decimal(100), min_hold_seconds=0)
    assert loose.min_hold_seconds == 0


def test_test_devices_only_means_a_real_provider_outside_production(tmp_path: Path) -> None:
    assert not Settings().test_devices_only
    assert Settings(provider=ProviderMode.real).test_devices_only
    assert Settings(env="staging", provider=ProviderMode.real).test_devices_only  # type: ignore[arg-type]
    assert not _production(tmp_path).test_devices_only


async def test_a_reader_reads_the_policy_and_no_key_does_not(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    assert (await client.get("/v1/policy")).status_code == 401
    answer = await client.get("/v1/policy", headers=bearer(await make_key(Scope.campaigns_read)))
    assert answer.status_code == 200
    body = answer.json()
    expected = effective_policy(db.settings).model_dump(mode="json")
    assert body == expected
    assert body["staging"]["first_wave_ceiling_percent"] == "50"
    assert body["staging"]["hold_floor_seconds"] == 60


async def _policy_events(db: Runtime) -> list[AuditEvent]:
    async with db.sessionmaker() as session:
        query = select(AuditEvent).where(AuditEvent.action == ACTION).order_by(col(AuditEvent.id))
        return list((await session.exec(query)).all())


async def test_a_start_with_another_policy_is_recorded_once_with_the_deployment_as_actor(
    db: Runtime,
) -> None:
    base = db.settings
    assert await record_if_changed(db.sessionmaker, base, process="api")
    assert not await record_if_changed(db.sessionmaker, base, process="worker")

    tighter = base.model_copy(update={"min_hold_seconds": 1200})
    assert await record_if_changed(db.sessionmaker, tighter, process="worker")
    # Two processes starting together with the same new policy record it once.
    real = tighter.model_copy(update={"provider": ProviderMode.real})
    results = await asyncio.gather(
        record_if_changed(db.sessionmaker, real, process="api"),
        record_if_changed(db.sessionmaker, real, process="worker"),
    )
    assert sorted(results) == [False, True]

    events = await _policy_events(db)
    assert len(events) == 3
    assert {e.actor for e in events} == {"deployment"}
    first, second, third = events
    assert first.before is None
    assert second.before == {"policy": first.after["policy"]}
    assert second.after["changed"] == ["staging.min_hold_seconds"]
    assert second.after["policy"]["staging"]["min_hold_seconds"] == 1200
    assert set(third.after["changed"]) == {"provider", "test_devices_only"}


async def test_the_api_records_its_policy_when_it_starts(db: Runtime) -> None:
    app = create_app(db.settings.model_copy(update={"max_first_wave_percent": Decimal(2)}))
    async with app.router.lifespan_context(app):
        pass
    events = await _policy_events(db)
    assert [e.after["policy"]["staging"]["max_first_wave_percent"] for e in events] == ["2"]


async def test_a_worker_records_its_policy_when_it_starts(db: Runtime) -> None:
    settings = db.settings.model_copy(update={"min_hold_seconds": 900})
    worker = build_worker(settings, burst=True, max_burst_jobs=1)
    try:
        await worker.main()
    finally:
        await worker.close()
    events = await _policy_events(db)
    assert [e.after["policy"]["staging"]["min_hold_seconds"] for e in events] == [900]
    assert "the worker on" in (events[0].reason or "")
