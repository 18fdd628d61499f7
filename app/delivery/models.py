"""The delivery ledger: the source of truth for who received what."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    literal_column,
    text,
)
from sqlmodel import Field, SQLModel

from app.db.types import BigIntPK, JSONType, UTCDateTime, utcnow


class DeliveryStatus(StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    invalid_token = "invalid_token"
    retrying = "retrying"
    cancelled = "cancelled"
    blocked = "blocked"
    # Not sent by the campaign's deadline (app.timing.schedule.deadline).
    expired = "expired"
    # The device had received its share of live campaigns (WAVECAST_FREQUENCY_CAP).
    capped = "capped"


FINAL_STATUSES = frozenset(
    {
        DeliveryStatus.sent,
        DeliveryStatus.failed,
        DeliveryStatus.invalid_token,
        DeliveryStatus.cancelled,
        DeliveryStatus.blocked,
        DeliveryStatus.expired,
        DeliveryStatus.capped,
    }
)
OPEN_STATUSES = frozenset(set(DeliveryStatus) - FINAL_STATUSES)


# Rows a sender may claim (with `retrying` also due); literal in the claim query too, so
# PostgreSQL can prove it implies the partial index's predicate.
CLAIMABLE_PREDICATE = "status IN ('queued', 'retrying')"
# When a claimable row is due: a queued row without a due time is due at once. The claim
# reads and orders by this very expression, which ix_delivery_claimable_due indexes.
CLAIM_DUE_FALLBACK = "'-infinity'"


class Delivery(SQLModel, table=True):
    """One row per (campaign, device), ever: the unique constraint is what makes a device
    receive a campaign at most once, whatever the queue does."""

    __tablename__ = "delivery"
    __table_args__ = (
        # On PostgreSQL each partition of the ledger holds this constraint, not the
        # partitioned table (app.delivery.partitions): a campaign's rows are all in one.
        UniqueConstraint("campaign_id", "device_id"),
        # Claims read one status of a campaign in id order (app.delivery.ledger.claim).
        Index("ix_delivery_campaign_status_id", "campaign_id", "status", "id"),
        Index("ix_delivery_campaign_wave_status", "campaign_id", "wave", "status"),
        # The reconciler looks for leases that expired.
        Index("ix_delivery_status_lease_until", "status", "lease_until"),
        # The opens budget reads a campaign's sends by the second, each tick
        # (app.rollout.opens_repository.sends_per_second).
        Index(
            "ix_delivery_campaign_sent_at",
            "campaign_id",
            "sent_at",
            postgresql_where=text("sent_at IS NOT NULL"),
            sqlite_where=text("sent_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True))
    campaign_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("campaign.id", ondelete="CASCADE"), nullable=False)
    )
    device_id: uuid.UUID = Field(sa_column=Column(ForeignKey("device.id"), nullable=False))
    wave: int = Field(sa_column=Column(Integer, nullable=False))
    # The campaign's ledger_month (app.delivery.partitions): the partition the row lives in.
    # No default: a row must name its campaign's month, or the claims would never find it.
    ledger_month: int = Field(sa_column=Column(Integer, nullable=False))
    status: DeliveryStatus = Field(
        default=DeliveryStatus.queued, sa_column=Column(String(16), nullable=False)
    )
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # Set when a worker claims the row: only the holder of this lease may record its outcome,
    # and an expired lease is reclaimed by the reconciler.
    lease_token: uuid.UUID | None = Field(default=None, nullable=True)
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    provider: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    provider_message_id: str | None = Field(
        default=None, sa_column=Column(String(256), nullable=True)
    )
    error_code: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    error_detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


def claim_due(table: Table) -> ColumnElement[datetime]:
    """When a row of `table` (the ledger) is due for a claim."""
    due: ColumnElement[datetime] = func.coalesce(
        table.c.next_attempt_at, literal_column(CLAIM_DUE_FALLBACK), type_=UTCDateTime
    )
    return due


# The sender's claim: a campaign's rows that are due, earliest first, then in id order. A range
# of this index is exactly the claimable rows: neither the rows already sent nor a local-time
# backlog that is not due yet are walked (ordering by id alone read every waiting row, every
# claim: about 150 ms at 1,000,000 rows of a local-time wave).
Index(
    "ix_delivery_claimable_due",
    Delivery.__table__.c.campaign_id,  # type: ignore[attr-defined]
    claim_due(Delivery.__table__),  # type: ignore[attr-defined]
    Delivery.__table__.c.id,  # type: ignore[attr-defined]
    postgresql_where=text(CLAIMABLE_PREDICATE),
    sqlite_where=text(CLAIMABLE_PREDICATE),
)


class SandboxMessage(SQLModel, table=True):
    """What the sandbox provider would have sent."""

    __tablename__ = "sandbox_message"

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True))
    campaign_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, index=True))
    delivery_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    device_id: uuid.UUID = Field(nullable=False)
    platform: str = Field(sa_column=Column(String(16), nullable=False))
    token: str = Field(sa_column=Column(String(4096), nullable=False))
    apns_environment: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    payload: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    worker: str = Field(sa_column=Column(String(200), nullable=False))
    sent_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class LedgerWaveSummary(SQLModel, table=True):
    """A wave's figures, kept when its campaign's ledger rows and engagement events are
    pruned (app.delivery.retention): what the campaign's view and engagement read from then
    on. A row here means the campaign's ledger is pruned (or being pruned)."""

    __tablename__ = "ledger_wave_summary"

    campaign_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True)
    )
    wave: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    # Rows per delivery status (DeliveryStatus values), as the ledger held them.
    counts: dict[str, int] = Field(sa_column=Column(JSONType, nullable=False))
    received: int = Field(sa_column=Column(BigInteger, nullable=False))
    opened: int = Field(sa_column=Column(BigInteger, nullable=False))
    converted: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Seconds from send to open (nearest rank); None when nothing sent was opened.
    time_to_open_p50: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    time_to_open_p90: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    pruned_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
