"""Wave check results: what each check saw, in order, per wave."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from app.db.types import BigIntPK, UTCDateTime


class WaveCheckResult(SQLModel, table=True):
    """One run of one check during one wave. The engine decides a wave's release and its
    pauses from these rows alone, read in order, so every worker decides alike and a pause
    names what was seen."""

    __tablename__ = "wave_check_result"
    __table_args__ = (
        Index("ix_wave_check_result_campaign_wave_at", "campaign_id", "wave", "observed_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True))
    campaign_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("campaign.id", ondelete="CASCADE"), nullable=False)
    )
    wave: int = Field(sa_column=Column(Integer, nullable=False))
    check_name: str = Field(sa_column=Column(String(100), nullable=False))
    # pass, fail or inconclusive (app.checks.evaluate.Result).
    result: str = Field(sa_column=Column(String(16), nullable=False))
    # The number the source answered; None when it answered none.
    value: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    # Why a result is inconclusive (a timeout, no series, ...), or the condition it was held to.
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    observed_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
