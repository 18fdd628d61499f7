"""People: who stands behind every API key, and whom the audit log names."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from app.db.types import UTCDateTime, utcnow


class PersonKind(StrEnum):
    # A person who reads what they approve: only a human may give the second pair of eyes.
    human = "human"
    # A marketing tool or another system acting on the bank's behalf.
    service = "service"


class Person(SQLModel, table=True):
    __tablename__ = "person"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    kind: PersonKind = Field(sa_column=Column(String(8), nullable=False))
    email: str | None = Field(default=None, sa_column=Column(String(320), nullable=True))
    # Slack's member id (U0123ABCD); one person per Slack user, so a command from Slack
    # always acts for exactly one person.
    slack_user_id: str | None = Field(
        default=None, sa_column=Column(String(32), nullable=True, unique=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
