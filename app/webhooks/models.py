"""Webhook subscriptions of marketing tools."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, String, Text
from sqlmodel import Field, SQLModel

from app.db.types import JSONType, UTCDateTime, utcnow


class Webhook(SQLModel, table=True):
    """Where to POST which notifications, signed per Standard Webhooks with `secret`.

    A deleted webhook keeps its row (`deleted_at`), so its deliveries stay listed and the
    outbox rows that point at it stay whole; nothing more is sent to it."""

    __tablename__ = "webhook"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False))
    # Notification kinds (app.notify.kinds.Kind values), or ["*"] for every kind.
    events: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    # `whsec_` + base64 of 32 random bytes; shown once, when the webhook is created.
    secret: str = Field(sa_column=Column(String(80), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    created_by: str = Field(sa_column=Column(String(200), nullable=False))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
