"""Pure arithmetic over a protocol fake's request records, for the throttle and kill benchmarks.

No I/O: the scenarios fetch the records (``GET /_fake/records``) and hand plain numbers here.
Every instant is ``time.monotonic()`` seconds; on Linux that clock is system-wide, so the
fake's instants and the benchmark's own are on one time line (``wavecast_tools.fakes.records``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    """One provider request as the fake saw it."""

    start: float
    """When its headers arrived at the fake."""
    end: float
    """When the fake wrote its answer (the record's ``answered``; ``start`` plus the delay a fault
    rule added for a request it never answered)."""
    status: int = 200
    retry_after: float | None = None
    """Seconds of the ``Retry-After`` the fake answered with, if any."""
    source: int | None = None
    """Which client process sent it (the benchmark's own numbering), when known."""


def sliding_max(times: Sequence[float], width: float = 1.0) -> int:
    """The most instants in any half-open window ``[t, t + width)``, over every real ``t``.

    Stricter than counting fixed, aligned windows: a burst straddling two aligned windows is
    seen whole. The maximum is reached with ``t`` on one of the instants, so two pointers over
    the sorted instants find it.
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    ordered = sorted(times)
    best = 0
    low = 0
    for high, instant in enumerate(ordered):
        while ordered[low] + width <= instant:
            low += 1
        best = max(best, high - low + 1)
    return best


def aligned_counts(times: Sequence[float], width: float = 1.0) -> list[int]:
    """Counts per window ``[t0 + k*width, t0 + (k+1)*width)``, t0 the first instant, up to and
    including the window of the last instant (which is usually partial)."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    if not times:
        return []
    first = min(times)
    counts = [0] * (math.floor((max(times) - first) / width) + 1)
    for instant in times:
        counts[min(len(counts) - 1, math.floor((instant - first) / width))] += 1
    return counts


def steady_counts(times: Sequence[float], width: float = 1.0) -> list[int]:
    """The aligned windows of the steady part: the first window (send loops still starting on
    both workers) and the last (partial: the audience ran out) are left out."""
    return aligned_counts(times, width)[1:-1]


def retry_after_windows(requests: Sequence[Request]) -> list[tuple[float, float]]:
    """Merged, sorted ``(from, until)`` intervals during which a Retry-After was in force: each
    answer with ``retry_after`` opens ``(end, end + retry_after)``, measured from the instant
    the fake answered."""
    raw = sorted(
        (r.end, r.end + r.retry_after) for r in requests if r.retry_after and r.retry_after > 0
    )
    merged: list[tuple[float, float]] = []
    for low, high in raw:
        # Open intervals: two that only touch stay apart, so the instant between them is in
        # neither (a request sent as one window closes and the next opens was allowed).
        if merged and low < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def inside_retry_after(requests: Sequence[Request]) -> list[Request]:
    """Requests that arrived strictly inside a Retry-After window (see ``retry_after_windows``).

    A request that arrived before the answer that opened a window is not inside it, even when
    its own answer came later: it was on the wire before anyone could have known.
    """
    windows = retry_after_windows(requests)
    lows = [low for low, _ in windows]
    inside = []
    for request in requests:
        index = bisect.bisect_left(lows, request.start) - 1
        if index >= 0 and windows[index][0] < request.start < windows[index][1]:
            inside.append(request)
    return inside


@dataclass(frozen=True, slots=True)
class InsideBySource:
    """Requests inside a Retry-After window, by whether their own process had been answered."""

    own: int
    """Sent inside a window opened by an answer to the same process: it had been told."""
    other: int
    """Inside only windows opened by answers to other processes: it could only have heard
    through them."""
    unknown: int
    """Sent by a process the benchmark could not tell."""


def inside_by_source(requests: Sequence[Request]) -> InsideBySource:
    """`inside_retry_after`, split by who sent each request and who got the answers."""
    answers: dict[int | None, list[tuple[float, float]]] = {}
    for r in requests:
        if r.retry_after and r.retry_after > 0:
            answers.setdefault(r.source, []).append((r.end, r.end + r.retry_after))
    own = other = unknown = 0
    for request in inside_retry_after(requests):
        if request.source is None:
            unknown += 1
        elif any(low < request.start < high for low, high in answers.get(request.source, [])):
            own += 1
        else:
            other += 1
    return InsideBySource(own=own, other=other, unknown=unknown)


@dataclass(frozen=True, slots=True)
class KillTrial:
    """What the fake saw around one kill."""

    started_after: int
    """Requests whose headers arrived after the kill was answered (target 0)."""
    started_before: int
    in_flight_at_answer: int
    """Requests started before the answer and not yet answered at it."""
    lag: float
    """Seconds from the answer to the last request started before it finishing; 0 when none
    was still in flight (the API waits for in-flight sends before it answers)."""
    last_end: float | None
    """When the last request started before the answer finished (None: none started)."""


def kill_trial(requests: Sequence[Request], answered: float) -> KillTrial:
    before = [r for r in requests if r.start <= answered]
    last_end = max((r.end for r in before), default=None)
    return KillTrial(
        started_after=sum(1 for r in requests if r.start > answered),
        started_before=len(before),
        in_flight_at_answer=sum(1 for r in before if r.end > answered),
        lag=max(0.0, last_end - answered) if last_end is not None else 0.0,
        last_end=last_end,
    )
