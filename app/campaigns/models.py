"""Campaigns and their waves."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    Uuid,
    text,
)
from sqlmodel import Field, SQLModel

from app.campaigns.state import CampaignStatus
from app.db.types import BigIntPK, JSONType, UTCDateTime, utcnow
from app.delivery import partitions


class CampaignKind(StrEnum):
    live = "live"
    test = "test"


class CampaignPriority(StrEnum):
    normal = "normal"
    critical = "critical"


class WaveStatus(StrEnum):
    pending = "pending"
    # Members are in the ledger and being sent.
    sending = "sending"
    # Every member has a final delivery status; the hold runs from finished_at.
    finished = "finished"


class Campaign(SQLModel, table=True):
    __tablename__ = "campaign"
    __table_args__ = (Index("ix_campaign_status", "status"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    kind: CampaignKind = Field(sa_column=Column(String(8), nullable=False))
    status: CampaignStatus = Field(
        default=CampaignStatus.draft, sa_column=Column(String(16), nullable=False)
    )
    # Bumped on every status change; Redis send grants carry it so a stale writer can never
    # re-open a campaign that has since been stopped.
    control_version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    content: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    # The audience is copied into the campaign when it is created: editing a saved segment
    # later never changes who a campaign targets.
    segment_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(ForeignKey("segment.id", ondelete="SET NULL"), nullable=True),
    )
    audience_rules: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    start_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    throttle_per_second: int = Field(sa_column=Column(Integer, nullable=False))
    failure_threshold_percent: Decimal = Field(sa_column=Column(Numeric(7, 4), nullable=False))
    # The campaign's rotation of the bucket space (app.rollout.bucketing.campaign_rotation).
    rotation: int = Field(sa_column=Column(BigInteger, nullable=False))
    current_wave: int = Field(default=-1, sa_column=Column(Integer, nullable=False))
    guard_override_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    guard_override_by: str | None = Field(
        default=None, sa_column=Column(String(200), nullable=True)
    )
    # What the override approved (app.guard.override): a SHA-256 of the content and the
    # lint's findings on it. An override whose hash is not the current content's covers
    # nothing, so an edit can never inherit an approval given for other words.
    guard_override_hash: str | None = Field(
        default=None, sa_column=Column(String(64), nullable=True)
    )
    status_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Timing (app.timing): each device is sent at the next occurrence of this local time
    # ("HH:MM") after its wave's release, in the device's own time zone; None sends at once.
    local_time: str | None = Field(default=None, sa_column=Column(String(5), nullable=True))
    # Wave checks (app.checks.spec.CheckSpec, as stored); None for campaigns stored before
    # checks existed, which have none of their own.
    checks: list[dict[str, Any]] | None = Field(
        default=None, sa_column=Column(JSONType, nullable=True)
    )
    # The campaign's quiet hours: None follows the deployment's (WAVECAST_QUIET_HOURS),
    # "off" has none (critical campaigns only), "HH:MM-HH:MM" is the campaign's own window.
    quiet_hours: str | None = Field(default=None, sa_column=Column(String(11), nullable=True))
    # Rows not sent by then end as `expired` (with content.ttl_seconds and the deployment's
    # WAVECAST_MAX_MESSAGE_LIFETIME: one deadline, the earliest).
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # "critical" (scope campaigns:critical) is exempt from frequency caps and quiet hours.
    priority: CampaignPriority = Field(
        default=CampaignPriority.normal,
        sa_column=Column(String(8), nullable=False, server_default="normal"),
    )
    created_by: str = Field(sa_column=Column(String(200), nullable=False))
    # The campaign's authors (app.approval): whoever created it and whoever last edited it
    # may not approve it. None for campaigns stored before people existed, or made by the
    # CLI or the system.
    created_by_person_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("person.id"), nullable=True)
    )
    edited_by_person_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("person.id"), nullable=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # Opens budget (app.rollout.opens_budget): the most push-driven opens per second the
    # backend can take (throttle.max_opens_per_second; None: no budget), and the send rate
    # the engine last derived from it with the reason, both shown to operators. The rate
    # published to the workers is the lower of this and throttle_per_second.
    max_opens_per_second: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    effective_per_second: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    effective_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Release planning (app.delivery.ledger.next_members): the furthest device of the
    # campaign's order put in the ledger so far, as (bucket, device id), so each release
    # chunk reads on from there instead of ordering the whole audience again; None: nothing
    # planned yet. plan_swept_wave is the wave whose release has already put in the ledger
    # the devices that joined the audience behind that position.
    plan_bucket: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    plan_device_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    plan_swept_wave: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    # The month the campaign was created in: its ledger rows live in that month's partition
    # (app.delivery.partitions). 0: created before the ledger was partitioned.
    ledger_month: int = Field(
        default_factory=lambda: partitions.month_of(utcnow()),
        sa_column=Column(Integer, nullable=False, server_default=text("0")),
    )


class CampaignWave(SQLModel, table=True):
    __tablename__ = "campaign_wave"

    campaign_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True)
    )
    index: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    percent: Decimal = Field(sa_column=Column(Numeric(9, 4), nullable=False))
    hold_seconds: int = Field(sa_column=Column(Integer, nullable=False))
    status: WaveStatus = Field(
        default=WaveStatus.pending, sa_column=Column(String(16), nullable=False)
    )
    audience_size: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # Cumulative: ceil(percent · audience_size) at release.
    target_count: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    released_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class IdempotentRequest(SQLModel, table=True):
    """A remembered answer to a create call, replayed when the same key comes again."""

    __tablename__ = "idempotent_request"

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True))
    principal: str = Field(sa_column=Column(String(200), nullable=False))
    key: str = Field(sa_column=Column(String(200), nullable=False))
    route: str = Field(sa_column=Column(String(200), nullable=False))
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    status_code: int = Field(sa_column=Column(Integer, nullable=False))
    response: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )

    __table_args__ = (
        Index("uq_idempotent_request_principal_key", "principal", "route", "key", unique=True),
    )
