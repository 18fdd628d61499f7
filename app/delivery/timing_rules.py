"""The timing rules as they apply to one campaign's rows at send time: its deadline, its quiet
hours and whether frequency caps count it. Built once per send job from the campaign and the
settings; the arithmetic is `app.timing`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from app.campaigns.models import Campaign, CampaignKind, CampaignPriority, CampaignWave
from app.campaigns.schemas import Content
from app.delivery.ledger import Claimed
from app.settings import Settings
from app.timing.caps import FrequencyCap
from app.timing.schedule import (
    QuietHours,
    deadline,
    next_local_occurrence,
    parse_local_time,
    parse_quiet_hours,
    quiet_until,
    seconds_left,
    zone_of,
)

OFF = "off"


@dataclass(frozen=True)
class SendTiming:
    # content.ttl_seconds (0: no time to live), counted from each row's release.
    ttl_seconds: int | None
    # The campaign's own deadline, or its start plus the deployment's longest lifetime,
    # whichever comes first.
    expires_at: datetime | None
    quiet: QuietHours | None
    default_zone: ZoneInfo
    # None: caps do not count this campaign (test or critical, or no cap configured).
    cap: FrequencyCap | None

    # A local-time campaign's local time, and when each of its waves was released: a row's
    # time to live counts from when it was meant to leave, not from its release.
    local_time: time | None = None
    released: Mapping[int, datetime] = field(default_factory=dict)

    def deadline_of(self, row: Claimed) -> datetime | None:
        return deadline(
            created_at=self.meant_to_leave(row),
            ttl_seconds=self.ttl_seconds or None,
            expires_at=self.expires_at,
            max_lifetime_seconds=None,
        )

    def meant_to_leave(self, row: Claimed) -> datetime:
        """When the row was due to be sent: its release, or, in a local-time campaign, the
        local time's next occurrence in the device's zone after its wave's release."""
        if self.local_time is None:
            return row.created_at
        released = self.released.get(row.wave, row.created_at)
        return max(
            row.created_at,
            _local_instant(self.local_time, row.timezone, self.default_zone, released),
        )

    def quiet_until(self, timezone: str | None, at: datetime) -> datetime | None:
        """When the device's quiet hours end, if `at` falls inside them."""
        if self.quiet is None:
            return None
        return quiet_until(self.quiet, _zone(timezone, self.default_zone), at)


@lru_cache(maxsize=4096)
def _zone(name: str | None, default: ZoneInfo) -> ZoneInfo:
    return zone_of(name, default)


@lru_cache(maxsize=16_384)
def _local_instant(
    local: time, zone: str | None, default: ZoneInfo, released: datetime
) -> datetime:
    return next_local_occurrence(local, _zone(zone, default), released)


def campaign_quiet_hours(settings: Settings, campaign: Campaign) -> QuietHours | None:
    """The window in force for the campaign: none for a critical one; its own ("off" is
    none); the deployment's otherwise."""
    if campaign.priority == CampaignPriority.critical:
        return None
    if campaign.quiet_hours is None:
        return settings.quiet_window
    return parse_quiet_hours(campaign.quiet_hours)


def campaign_deadline(settings: Settings, campaign: Campaign) -> datetime | None:
    """The campaign-wide deadline: its `expires_at` (which its start already cut to the
    deployment's longest lifetime), or, for a campaign started without one, its start plus
    that lifetime."""
    limits = [campaign.expires_at] if campaign.expires_at is not None else []
    lifetime = settings.max_message_lifetime_seconds
    if lifetime is not None and campaign.started_at is not None:
        limits.append(campaign.started_at + timedelta(seconds=lifetime))
    return min(limits, default=None)


def send_timing(
    settings: Settings,
    campaign: Campaign,
    ttl_seconds: int | None,
    waves: Sequence[CampaignWave] = (),
) -> SendTiming:
    capped = campaign.kind == CampaignKind.live and campaign.priority != CampaignPriority.critical
    return SendTiming(
        ttl_seconds=ttl_seconds,
        expires_at=campaign_deadline(settings, campaign),
        quiet=campaign_quiet_hours(settings, campaign),
        default_zone=settings.default_zone,
        cap=settings.cap if capped else None,
        local_time=parse_local_time(campaign.local_time) if campaign.local_time else None,
        released={w.index: w.released_at for w in waves if w.released_at is not None},
    )


def with_time_left(
    content: Content, timing: SendTiming, rows: Sequence[Claimed], now: datetime
) -> Content:
    """The content as a batch of `rows` sends it: its time to live cut to the time left
    before the earliest of their deadlines (APNs `apns-expiration`, FCM `ttl`), so a phone
    that was offline never shows it late. Unchanged when no row has a deadline."""
    deadlines = [d for r in rows if (d := timing.deadline_of(r)) is not None]
    if not deadlines:
        return content
    return content.model_copy(update={"ttl_seconds": max(1, seconds_left(min(deadlines), now))})
