"""The outbox: one row per notification and destination, written in the transaction of the
decision it reports, and the attempts the worker made to deliver it."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Text, Uuid
from sqlmodel import Field, SQLModel

from app.db.types import BigIntPK, JSONType, UTCDateTime, utcnow

SLACK = "slack"


class OutboxStatus(StrEnum):
    pending = "pending"
    # The destination acknowledged it (Slack: `slack_ts` holds the message's timestamp).
    sent = "sent"
    # Given up: a permanent refusal, or every attempt used.
    failed = "failed"
    # Nowhere to send it: Slack is not configured, or the webhook was deleted.
    skipped = "skipped"


class OutboxMessage(SQLModel, table=True):
    """A notification of the audit event `audit_sequence` for one destination: `slack` (the
    team channel) or a webhook (`webhook_id`). The audit log is append-only, so what the
    channel answered (`slack_ts`) is kept here, keyed by the event's sequence, and the
    message carries the sequence: the log and the channel point at each other."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        Index("uq_outbox_message_event_destination", "audit_sequence", "destination", unique=True),
        Index("ix_outbox_message_due", "status", "destination", "next_attempt_at"),
        Index("ix_outbox_message_webhook", "webhook_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True))
    audit_sequence: int = Field(sa_column=Column(BigInteger, nullable=False))
    kind: str = Field(sa_column=Column(String(48), nullable=False))
    # `slack`, or `webhook:<id>` (one row per event and destination).
    destination: str = Field(sa_column=Column(String(64), nullable=False))
    webhook_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, ForeignKey("webhook.id"), nullable=True)
    )
    campaign_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    # What the decision's transaction knew and the audit event does not say (e.g. the
    # campaigns a global switch paused).
    details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    status: str = Field(default=OutboxStatus.pending, sa_column=Column(String(16), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    # A worker's claim: it alone sends the row until then (a worker that died is replaced).
    claimed_until: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    claim_token: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    slack_channel: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    slack_ts: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class DeliveryAttempt(SQLModel, table=True):
    """One try at delivering an outbox row, whatever came of it."""

    __tablename__ = "outbox_attempt"
    __table_args__ = (Index("ix_outbox_attempt_message", "message_id", "attempt"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True))
    message_id: int = Field(
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"),
            ForeignKey("outbox_message.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    started_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    duration_ms: int = Field(sa_column=Column(Integer, nullable=False))
    # sent, retry (a transient failure; `retry_at` says when) or failed (given up).
    outcome: str = Field(sa_column=Column(String(16), nullable=False))
    status_code: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    retry_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
