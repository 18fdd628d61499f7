"""A promotion skips the rest of a hold, but in production never the staging policy's
minimum hold of a live campaign (app.rollout.engine._policy_hold_until)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.campaigns.models import Campaign, CampaignWave, WaveStatus
from app.rollout.engine import _policy_hold_until
from app.settings import Environment, ProviderMode, Settings

FINISHED = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _campaign(kind: str) -> Campaign:
    return Campaign(
        id=uuid.uuid4(),
        name="n",
        kind=kind,
        content={},
        audience_rules={"everyone": True},
        throttle_per_second=10,
        failure_threshold_percent=Decimal(5),
        rotation=1,
        created_by="t",
    )


def _wave(hold: int, finished: datetime | None = FINISHED) -> CampaignWave:
    return CampaignWave(
        campaign_id=uuid.uuid4(),
        index=0,
        percent=Decimal(1),
        hold_seconds=hold,
        status=WaveStatus.finished,
        finished_at=finished,
    )


PRODUCTION = Settings.model_construct(
    env=Environment.production, provider=ProviderMode.real, min_hold_seconds=600
)
DEVELOPMENT = Settings.model_construct(min_hold_seconds=600)


@pytest.mark.parametrize(
    ("settings", "kind", "hold", "expected"),
    [
        (PRODUCTION, "live", 3600, FINISHED + timedelta(seconds=600)),
        (PRODUCTION, "live", 300, FINISHED + timedelta(seconds=300)),  # never beyond its own
        (PRODUCTION, "test", 3600, None),
        (DEVELOPMENT, "live", 3600, None),
    ],
)
def test_the_policy_floor_of_a_promoted_hold(
    settings: Settings, kind: str, hold: int, expected: datetime | None
) -> None:
    assert _policy_hold_until(settings, _campaign(kind), _wave(hold)) == expected


def test_an_unfinished_wave_has_no_floor_yet() -> None:
    assert _policy_hold_until(PRODUCTION, _campaign("live"), _wave(3600, None)) is None
