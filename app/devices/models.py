"""The device table: one row per push token."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, Index, String
from sqlmodel import Field, SQLModel

from app.db.base import metadata as _metadata  # noqa: F401  (naming convention first)
from app.db.types import JSONType, UTCDateTime, utcnow


class Platform(StrEnum):
    ios = "ios"
    android = "android"


class ApnsEnvironment(StrEnum):
    sandbox = "sandbox"
    production = "production"


class DeviceStatus(StrEnum):
    active = "active"
    invalid = "invalid"
    unregistered = "unregistered"


class Device(SQLModel, table=True):
    __tablename__ = "device"
    __table_args__ = (
        # Audience rules on tags use ?| and ?& (app.audiences.rules), which jsonb_ops serves.
        Index("ix_device_tags", "tags", postgresql_using="gin"),
        # Version rules compare the sort key (eq, lt, gte, ...).
        Index("ix_device_app_version_key", "app_version_key"),
        # A campaign's send order is (bucket - rotation) mod 2**32, then id: two ranges of
        # this index, read from where the campaign's planning stopped (app.delivery.ledger).
        Index("ix_device_bucket_id", "bucket", "id"),
    )

    id: uuid.UUID = Field(primary_key=True)
    token: str = Field(sa_column=Column(String(4096), nullable=False, unique=True))
    platform: Platform = Field(sa_column=Column(String(16), nullable=False))
    user_id: str | None = Field(default=None, max_length=256, index=True)
    locale: str | None = Field(default=None, max_length=35)
    timezone: str | None = Field(default=None, max_length=64)
    app_version: str | None = Field(default=None, max_length=64)
    # A string that sorts like the version (see app.audiences.versions), so version-aware
    # segment rules are plain comparisons on PostgreSQL and SQLite alike.
    app_version_key: str | None = Field(default=None, max_length=64)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    attributes: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    apns_environment: ApnsEnvironment | None = Field(
        default=None, sa_column=Column(String(16), nullable=True)
    )
    is_test_device: bool = Field(default=False, nullable=False)
    status: DeviceStatus = Field(
        default=DeviceStatus.active, sa_column=Column(String(16), nullable=False)
    )
    # A stable hash of the id (see app.rollout.bucketing); never recomputed, never changed.
    bucket: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_seen_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
