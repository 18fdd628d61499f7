"""What the campaign pages say about a campaign (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.campaigns.models import CampaignPriority
from app.campaigns.schemas import CampaignOut, Content, WaveOut
from app.campaigns.state import CampaignStatus
from app.ui.campaign_view import (
    device_texts,
    hold_text,
    platform_options,
    quiet_hours_text,
    reach,
    rules_text,
    wave_state,
)


def test_each_locale_and_platform_sees_what_the_payloads_carry() -> None:
    content = Content.model_validate(
        {
            "title": "Statement",
            "body": "Log in.",
            "ios": {"title": "Statement (iOS)", "badge": 2},
            "android": {"body": "Tap to open.", "channel_id": "news"},
            "locales": {"pl": {"title": "Wyciąg", "body": "Zaloguj się."}},
        }
    )
    default, polish = device_texts(content)
    assert default.locale is None
    assert (default.ios.title, default.ios.body) == ("Statement (iOS)", "Log in.")
    assert (default.android.title, default.android.body) == ("Statement", "Tap to open.")
    # A locale variant wins over the platform override, on both platforms.
    assert polish.locale == "pl"
    assert polish.ios.title == polish.android.title == "Wyciąg"
    options = platform_options(content)
    assert ("badge", "2") in options["ios"] and ("title", "Statement (iOS)") in options["ios"]
    assert ("channel_id", "news") in options["android"]
    assert ("mutable_content", "no") in options["ios"]
    assert platform_options(Content(title="a", body="b")) == {}


@pytest.mark.parametrize(
    ("rules", "text"),
    [
        ({"everyone": True}, "everyone (every active device)"),
        (
            {"all": [{"field": "locale", "op": "starts_with", "value": "pl"}]},
            'all of (locale starts_with "pl")',
        ),
        (
            {
                "any": [
                    {"field": "tags", "op": "contains_any", "value": ["vip", "beta"]},
                    {"not": {"field": "app_version", "op": "lt", "value": "5.2"}},
                ]
            },
            'any of (tags contains_any ["vip", "beta"], not (app_version lt "5.2"))',
        ),
        (
            {"all": [{"field": "attributes.score", "op": "gt", "value": 3}]},
            "all of (attributes.score gt 3)",
        ),
    ],
)
def test_rules_read_as_a_sentence(rules: dict[str, object], text: str) -> None:
    assert rules_text(rules) == text


@pytest.mark.parametrize(
    ("campaign", "wave", "shown"),
    [
        (CampaignStatus.killed, "pending", "not sent"),
        (CampaignStatus.cancelled, "pending", "not sent"),
        (CampaignStatus.killed, "sending", "stopped"),
        (CampaignStatus.killed, "finished", "finished"),
        (CampaignStatus.running, "pending", "pending"),
        (CampaignStatus.paused, "pending", "pending"),
        (CampaignStatus.draft, "pending", "pending"),
    ],
)
def test_a_stopped_campaigns_unreleased_waves_read_not_sent(
    campaign: CampaignStatus, wave: str, shown: str
) -> None:
    assert wave_state(campaign, wave) == shown


def _wave(index: int, percent: str, audience_size: int | None) -> WaveOut:
    return WaveOut(
        index=index,
        percent=Decimal(percent),
        hold_seconds=0,
        status="finished" if audience_size is not None else "pending",
        audience_size=audience_size,
        target_count=None,
        targeted=0,
        queued=0,
        sending=0,
        retrying=0,
        sent=0,
        failed=0,
        invalid=0,
        cancelled=0,
        blocked=0,
        expired=0,
        capped=0,
        started_at=None,
        finished_at=None,
        hold_until=None,
    )


def _campaign(waves: list[WaveOut]) -> CampaignOut:
    now = datetime.now(UTC)
    return CampaignOut(
        id=uuid.uuid4(),
        name="c",
        kind="live",
        status=CampaignStatus.running,
        status_reason=None,
        content={},
        audience={},
        start_at=None,
        throttle={"per_second": 1},
        failure_threshold_percent=Decimal(5),
        current_wave=0,
        next_wave_at=None,
        waves=waves,
        guard_override_reason=None,
        local_time=None,
        quiet_hours=None,
        expires_at=None,
        priority=CampaignPriority.normal,
        created_by="x",
        created_at=now,
        updated_at=now,
        started_at=now,
        finished_at=None,
    )


def test_progress_is_over_the_audience_at_the_latest_release() -> None:
    one_percent = reach(_campaign([_wave(0, "1", 1000), _wave(1, "100", None)]), 10)
    assert (one_percent.audience, one_percent.percent) == (1000, "1 %")
    # The audience grew by the second release: that size is the whole.
    later = reach(_campaign([_wave(0, "1", 1000), _wave(1, "50", 1200)]), 600)
    assert later.percent == "50 %"
    assert reach(_campaign([_wave(0, "1", 10**6)]), 1).percent == "< 0.1 %"
    assert reach(_campaign([_wave(0, "1", 300)]), 1).percent == "0.3 %"
    unreleased = reach(_campaign([_wave(0, "1", None)]), 0)
    assert (unreleased.audience, unreleased.percent) == (None, "—")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0 s"), (45, "45 s"), (60, "1 min"), (600, "10 min"), (7200, "2 h")]
)
def test_holds_read_as_the_guard_writes_them(seconds: int, text: str) -> None:
    assert hold_text(seconds) == text


@pytest.mark.parametrize(
    ("priority", "setting", "in_force", "shown"),
    [
        ("normal", None, "21:00-08:00", "21:00-08:00, device-local (this deployment's)"),
        ("normal", None, None, "none (this deployment has none)"),
        ("normal", "22:00-07:30", "22:00-07:30", "22:00-07:30, device-local (the campaign's own)"),
        ("normal", "off", None, "off"),
        ("critical", "off", None, "none: a critical campaign is exempt from quiet hours"),
        ("critical", None, None, "none: a critical campaign is exempt from quiet hours"),
    ],
)
def test_the_quiet_hours_name_where_they_come_from(
    priority: str, setting: str | None, in_force: str | None, shown: str
) -> None:
    assert quiet_hours_text(priority, setting, in_force) == shown
