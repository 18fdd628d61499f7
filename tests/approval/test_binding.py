"""What an approval is bound to (pure): every field that changes what is sent, to whom or how
fast changes the binding; nothing else does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.approval.binding import binding, needed_because
from app.approval.service import campaign_binding
from app.campaigns.models import Campaign, CampaignKind, CampaignWave
from app.guard.override import judge_content

T = datetime(2026, 12, 24, 9, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "kind": "live",
    "content": {"title": "Your statement is ready", "body": "Log in to see it."},
    "audience_rules": {"everyone": True},
    "waves": [(Decimal("1"), 600), (Decimal("100"), 0)],
    "start_at": None,
    "local_time": None,
    "checks": [],
    "throttle_per_second": 100,
    "max_opens_per_second": None,
    "failure_threshold_percent": Decimal("5"),
    "quiet_hours": None,
    "expires_at": None,
    "priority": "normal",
    "override_reason": None,
    "override_hash": None,
}
CHANGES: dict[str, Any] = {
    "kind": "test",
    "content": {"title": "Your statement is ready", "body": "Log in to see it now."},
    "audience_rules": {"field": "platform", "op": "eq", "value": "ios"},
    "waves": [(Decimal("5"), 600), (Decimal("100"), 0)],
    "start_at": T,
    "local_time": "10:00",
    "checks": [{"name": "tap surge", "builtin": "opens_per_second", "pass_when": {"lt": 400}}],
    "throttle_per_second": 100_000,
    "max_opens_per_second": 300,
    "failure_threshold_percent": Decimal("20"),
    "quiet_hours": "off",
    "expires_at": T + timedelta(hours=4),
    "priority": "critical",
    "override_reason": "the quiz is called Test",
}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_each_field_is_bound(field: str) -> None:
    assert binding(**{**BASE, field: CHANGES[field]}) != binding(**BASE)


def test_the_same_campaign_read_back_binds_the_same() -> None:
    read_back = {
        **BASE,
        "waves": [(Decimal("1.0000"), 600), (Decimal("100.0000"), 0)],
        "failure_threshold_percent": Decimal("5.0000"),
        "audience_rules": {"everyone": True},
    }
    assert binding(**read_back) == binding(**BASE)
    later_hour = {**BASE, "start_at": T}
    same_instant = {**BASE, "start_at": T.astimezone(ZoneInfo("Europe/Warsaw"))}
    assert binding(**later_hour) == binding(**same_instant)


def test_when_approval_is_needed() -> None:
    def needed(**kw: Any) -> list[str]:
        args = {"live": True, "audience_size": 10, "threshold": None, "production": False}
        return needed_because(**{**args, "has_override": False, **kw})

    assert needed() == []
    assert needed(threshold=0, audience_size=0) != []  # 0: every live campaign
    assert needed(threshold=10) == []
    assert needed(threshold=9) != []
    assert needed(threshold=0, live=False) == []  # test devices only
    assert needed(production=True, has_override=True) != []
    assert needed(production=False, has_override=True) == []


# ------------------------------------------------------ every stored column, decided
# The Campaign columns an approval does not bind, each with why. A column in neither this
# list nor BOUND_COLUMNS fails test_every_campaign_column_is_bound_or_excluded until someone
# decides whether it changes what is sent, to whom or how fast (then bind it in
# app.approval.service.campaign_binding and list it in BOUND_COLUMNS) or not (list it here).
NOT_BOUND: dict[str, str] = {
    "id": "the approval names its campaign; the binding covers what it sends",
    "name": "reaches no one: never part of a push",
    "status": "the lifecycle: an approval is what lets a draft leave it",
    "control_version": "bumped on every status change, for the workers' grants",
    "segment_id": "the audience is bound as audience_rules, copied from the segment",
    "rotation": "set from the campaign's id at creation and never edited",
    "current_wave": "progress of a started campaign",
    "guard_override_by": "who gave the override; its reason and what it covers are bound",
    "status_reason": "why the last transition happened",
    "created_by": "an author (who may not approve), not what is sent",
    "created_by_person_id": "an author (who may not approve), not what is sent",
    "edited_by_person_id": "an author (who may not approve), not what is sent",
    "created_at": "a timestamp",
    "updated_at": "a timestamp",
    "started_at": "a timestamp",
    "finished_at": "a timestamp",
    "effective_per_second": "derived by the engine from the bound opens budget as it runs",
    "effective_reason": "why the engine derived that rate",
    "plan_bucket": "release progress (app.delivery.ledger)",
    "plan_device_id": "release progress (app.delivery.ledger)",
    "plan_swept_wave": "release progress (app.delivery.ledger)",
    "ledger_month": "where its ledger rows are stored (app.delivery.partitions), set at creation",
}
OVERRIDE_REASON = "the quiz is called Test"
BASE_CONTENT = {"title": "Test your knowledge", "body": "Take our five-question quiz."}
# Each bound column and a value that differs from base_campaign()'s.
BOUND_COLUMNS: dict[str, Any] = {
    "kind": "test",
    "content": {"title": "Test your knowledge", "body": "Take our six-question quiz."},
    "audience_rules": {"field": "platform", "op": "eq", "value": "ios"},
    "start_at": T,
    "local_time": "10:00",
    "checks": [{"name": "tap surge", "builtin": "opens_per_second", "pass_when": {"lt": 400}}],
    "throttle_per_second": 100_000,
    "max_opens_per_second": 300,
    "failure_threshold_percent": Decimal("20"),
    "quiet_hours": "off",
    "expires_at": T + timedelta(hours=4),
    "priority": "critical",
    # The base campaign has a standing override: another reason is another approval, and
    # a hash that no longer covers the content leaves no override standing.
    "guard_override_reason": "the quiz's name is Test, checked again",
    "guard_override_hash": "0" * 64,
}
WAVE_NOT_BOUND: dict[str, str] = {
    "campaign_id": "the campaign the wave belongs to",
    "index": "the waves are bound in this order; their percentages strictly increase",
    "status": "progress",
    "audience_size": "counted at release",
    "target_count": "computed at release",
    "released_at": "a timestamp",
    "finished_at": "a timestamp",
}
WAVE_BOUND: dict[str, Any] = {"percent": Decimal("2"), "hold_seconds": 1200}


def base_campaign() -> Campaign:
    return Campaign(
        name="Quiz",
        kind=CampaignKind.live,
        content=BASE_CONTENT,
        audience_rules={"everyone": True},
        throttle_per_second=100,
        failure_threshold_percent=Decimal("5"),
        rotation=7,
        created_by="test",
        guard_override_reason=OVERRIDE_REASON,
        guard_override_hash=judge_content(BASE_CONTENT).binding,
    )


def base_waves(campaign: Campaign) -> list[CampaignWave]:
    return [
        CampaignWave(campaign_id=campaign.id, index=0, percent=Decimal("1"), hold_seconds=600),
        CampaignWave(campaign_id=campaign.id, index=1, percent=Decimal("100"), hold_seconds=0),
    ]


def _columns(model: type[Any]) -> list[str]:
    return sorted(column.key for column in model.__table__.columns)


@pytest.mark.parametrize("column", _columns(Campaign))
def test_every_campaign_column_is_bound_or_excluded(column: str) -> None:
    assert column not in NOT_BOUND or column not in BOUND_COLUMNS, column
    if column in NOT_BOUND:
        return
    assert column in BOUND_COLUMNS, (
        f"campaign.{column} is neither bound nor excluded: decide whether it changes what is "
        "sent, to whom or how fast, and list it in BOUND_COLUMNS or NOT_BOUND"
    )
    campaign = base_campaign()
    before = campaign_binding(campaign, base_waves(campaign))
    assert getattr(campaign, column) != BOUND_COLUMNS[column]
    setattr(campaign, column, BOUND_COLUMNS[column])
    assert campaign_binding(campaign, base_waves(campaign)) != before


@pytest.mark.parametrize("column", _columns(CampaignWave))
def test_every_wave_column_is_bound_or_excluded(column: str) -> None:
    if column in WAVE_NOT_BOUND:
        return
    assert column in WAVE_BOUND, (
        f"campaign_wave.{column} is neither bound nor excluded: list it in WAVE_BOUND or "
        "WAVE_NOT_BOUND"
    )
    campaign = base_campaign()
    waves = base_waves(campaign)
    before = campaign_binding(campaign, waves)
    setattr(waves[0], column, WAVE_BOUND[column])
    assert campaign_binding(campaign, waves) != before


def test_the_base_campaign_has_a_standing_override_and_the_name_is_not_bound() -> None:
    # Without a standing override the two override columns above would prove nothing.
    campaign = base_campaign()
    with_override = campaign_binding(campaign, base_waves(campaign))
    campaign.guard_override_reason = None
    assert campaign_binding(campaign, base_waves(campaign)) != with_override
    campaign = base_campaign()
    campaign.name = "Another name"
    assert campaign_binding(campaign, base_waves(campaign)) == with_override
