"""API keys: stored only as a hash; the raw key is shown once, at creation."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, String
from sqlmodel import Field, SQLModel

from app.db.types import JSONType, UTCDateTime, utcnow


class Scope(StrEnum):
    devices_write = "devices:write"
    # Raw push tokens, user ids and attributes: personal data, not part of watching campaigns.
    devices_read = "devices:read"
    campaigns_read = "campaigns:read"
    campaigns_write = "campaigns:write"
    campaigns_operate = "campaigns:operate"
    # Sets priority "critical": exempt from frequency caps and quiet hours.
    campaigns_critical = "campaigns:critical"
    # The second pair of eyes: approve a campaign someone else wrote (humans only).
    campaigns_approve = "campaigns:approve"
    # Engagement reports (POST /v1/events): what the app or the bank's backend holds.
    events_write = "events:write"
    kill = "kill"
    admin = "admin"


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    # Every key belongs to a person (app.people): the audit log names them with the key.
    person_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("person.id"), nullable=False, index=True)
    )
    # The visible part of the key, unique, used to find the row before comparing hashes.
    prefix: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    key_hash: str = Field(sa_column=Column(String(128), nullable=False))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    last_used_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
