"""Request and response shapes of the events endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class EventIn(BaseModel):
    """One report (documentation only: entries are checked by `app.events.parse`)."""

    ref: int | str = Field(description="the push's `wavecast_ref`")
    type: Literal["received", "opened", "converted"]
    at: datetime | None = Field(
        default=None,
        description="when it happened, ISO-8601 with offset; default now; not before the "
        "push existed (its wave's release; 5 minutes allowed for the phone's clock)",
    )


class Rejection(BaseModel):
    index: int
    error: str


class EventsResult(BaseModel):
    accepted: int
    # Reports of a (ref, type) already stored, or repeated within the batch: nothing changed.
    duplicates: int
    rejected: list[Rejection]


class WaveEngagement(BaseModel):
    index: int
    sent: int
    received: int
    opened: int
    converted: int
    # opened / sent; null before anything is sent.
    open_rate: float | None
    # Seconds from send to open, nearest rank; null without opens.
    time_to_open_p50: float | None
    time_to_open_p90: float | None


class OpensPoint(BaseModel):
    second: datetime
    opens: int


class EngagementOut(BaseModel):
    campaign_id: str
    waves: list[WaveEngagement]
    since: datetime
    until: datetime
    # Opens per second in [since, until); seconds without opens are left out.
    opens_per_second: list[OpensPoint]
