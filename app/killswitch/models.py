"""The global kill switch: one row, PostgreSQL is its truth, Redis its fast path."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Integer, String, Text
from sqlmodel import Field, SQLModel

from app.db.types import UTCDateTime

SWITCH_ID = 1


class KillSwitch(SQLModel, table=True):
    __tablename__ = "kill_switch"

    id: int = Field(default=SWITCH_ID, sa_column=Column(Integer, primary_key=True))
    engaged: bool = Field(default=False, nullable=False)
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    changed_by: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    changed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
