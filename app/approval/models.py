"""Four-eyes approvals of campaigns."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Column, ForeignKey, Index, Integer, Numeric, String, Text, Uuid
from sqlmodel import Field, SQLModel

from app.db.types import UTCDateTime, utcnow


class CampaignApproval(SQLModel, table=True):
    """One approval given to a campaign, bound to what it sends and to whom (`binding`,
    app.approval.binding). It stands while it is not voided and its binding is the
    campaign's current one; an edit voids it, and a start needs one that stands."""

    __tablename__ = "campaign_approval"
    __table_args__ = (Index("ix_campaign_approval_campaign_at", "campaign_id", "approved_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    campaign_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("campaign.id", ondelete="CASCADE"), nullable=False)
    )
    binding: str = Field(sa_column=Column(String(64), nullable=False))
    person_id: uuid.UUID = Field(sa_column=Column(ForeignKey("person.id"), nullable=False))
    # The approver's name when they approved (a person may be renamed later).
    person_name: str = Field(sa_column=Column(String(200), nullable=False))
    key_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    channel: str = Field(sa_column=Column(String(16), nullable=False))
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The guard override the approver read and approved with the campaign, if any.
    override_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The limits the approver read (the binding covers them too, as a hash): one person may
    # make a started campaign stricter, never looser than these (None: approved before they
    # were kept).
    throttle_per_second: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    max_opens_per_second: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    failure_threshold_percent: Decimal | None = Field(
        default=None, sa_column=Column(Numeric(7, 4), nullable=True)
    )
    approved_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    voided_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    void_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
