"""Engagement events: one row per (delivery, type), ever."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.db.types import BigIntPK, UTCDateTime, utcnow


class EventType(StrEnum):
    received = "received"
    opened = "opened"
    converted = "converted"


class EngagementEvent(SQLModel, table=True):
    """What a device reported about one push. The unique (delivery, type) makes a report
    idempotent: an app that reports twice, or a backend that retries a batch, counts once
    (the first report's time stands)."""

    __tablename__ = "engagement_event"
    __table_args__ = (
        UniqueConstraint("delivery_id", "type"),
        # Per-wave counts, time to open and the opens series read one campaign's events of a
        # type, by wave or by time.
        Index("ix_engagement_event_campaign_type_occurred", "campaign_id", "type", "occurred_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True))
    # The ledger row (its `wavecast_ref`). No foreign key: PostgreSQL partitions the ledger
    # (app.delivery.partitions), and a key to a partitioned table must name its partition
    # key. The store keeps only refs it finds in the ledger, and retention deletes a
    # campaign's events before its rows.
    delivery_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Copied from the delivery row when the event is stored, so aggregation never joins the
    # ledger (a delivery's campaign and wave never change).
    campaign_id: uuid.UUID = Field(nullable=False)
    wave: int = Field(sa_column=Column(Integer, nullable=False))
    type: EventType = Field(sa_column=Column(String(16), nullable=False))
    # When it happened on the device (the report's `at`), and when Wavecast heard of it.
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
