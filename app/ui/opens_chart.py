"""The campaign page's opens-per-second chart, laid out for a server-rendered SVG (pure).

One unit of the SVG's width is one second of the window and its height is the busiest
second, so the template only writes rectangles: no script draws it (the form's CSP allows
no inline script or style), and the page's live part, fetched again every few seconds,
brings a fresh chart with the rest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.events.schemas import OpensPoint

# What the page shows: the last ten minutes of opens, one bar a second.
SPAN = timedelta(minutes=10)
HEIGHT = 100


@dataclass(frozen=True)
class Bar:
    x: int
    y: float
    height: float
    opens: int
    second: datetime


@dataclass(frozen=True)
class OpensChart:
    since: datetime
    until: datetime
    width: int
    height: int
    bars: list[Bar]
    peak: int
    total: int


def opens_chart(
    since: datetime, until: datetime, points: Sequence[OpensPoint], height: int = HEIGHT
) -> OpensChart:
    """Bars for the seconds with opens in [since, until); a second's bar is as tall as its
    share of the busiest second, and never thinner than one unit, so one open shows."""
    width = max(1, int((until - since).total_seconds()))
    inside = [p for p in points if since <= p.second < until and p.opens > 0]
    peak = max((p.opens for p in inside), default=0)
    bars = []
    for p in inside:
        tall = max(1.0, round(height * p.opens / peak, 2))
        bars.append(
            Bar(
                x=int((p.second - since).total_seconds()),
                y=round(height - tall, 2),
                height=tall,
                opens=p.opens,
                second=p.second,
            )
        )
    return OpensChart(
        since=since,
        until=until,
        width=width,
        height=height,
        bars=bars,
        peak=peak,
        total=sum(p.opens for p in inside),
    )
