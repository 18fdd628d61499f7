"""The append-only audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, SmallInteger, String, Text, Uuid
from sqlmodel import Field, SQLModel

from app.db.types import BigIntPK, JSONType, UTCDateTime, utcnow


class AuditEvent(SQLModel, table=True):
    """One decision. `sequence`, `prev_hash` and `hash` link it into the tamper-evident chain
    (see `app.audit.chain`); they are filled in when the event is flushed."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_subject", "subject_type", "subject_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True))
    occurred_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False, index=True)
    )
    actor: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    action: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    subject_type: str = Field(sa_column=Column(String(32), nullable=False))
    subject_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    # Who, by which key, through which channel (app.auth.principal). Events written before
    # people existed have none of the three, and hash_version 1: their hash never covered
    # them (app.audit.chain).
    person_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, nullable=True, index=True)
    )
    person_name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    key_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    channel: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    hash_version: int = Field(
        default=2, sa_column=Column(SmallInteger, nullable=False, server_default="1")
    )
    sequence: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=False, unique=True)
    )
    prev_hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=False))
    hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=False))
