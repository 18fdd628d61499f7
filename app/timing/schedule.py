"""Local-time delivery, quiet hours and the send-by deadline, as pure functions.

A local time names one instant per local date of a zone. On most dates that is the instant the
zone's wall clock reads it. Daylight-saving changes give the two exceptions, resolved the same
way everywhere in this module:

- a time the clocks spring forward over (02:30 in Europe/Warsaw on the last Sunday of March)
  names the first instant after the gap: 03:00 CEST, 01:00 UTC;
- a time the clocks fall back over (02:30 on the last Sunday of October) names its first
  occurrence, 02:30 CEST. The repeat an hour later belongs to no local time: a date has one
  02:30, and a device is never held for a second one.

Quiet hours are a wall-clock window read the same way: each local date's window runs from the
instant its start names to the instant its end names (on the next date when the window crosses
midnight). An instant is quiet when it lies in one of those intervals.

Every function takes the instant it reasons about (nothing here reads the clock), accepts any
aware datetime and answers in UTC.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "QuietHours",
    "deadline",
    "due_at",
    "next_local_occurrence",
    "parse_local_time",
    "parse_quiet_hours",
    "quiet_until",
    "seconds_left",
    "zone_of",
]

_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_LOCAL_TIME_FORM = '"HH:MM", 00:00 to 23:59 (e.g. "09:30")'
_QUIET_HOURS_FORM = '"HH:MM-HH:MM" (e.g. "21:00-08:00") or "off"'
_ONE_DAY = timedelta(days=1)


def parse_local_time(text: str) -> time:
    """``"09:30"`` → 09:30. Two digits for hours and minutes, 00:00 to 23:59."""
    match = _CLOCK.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"a local time must be {_LOCAL_TIME_FORM}, got {text!r}")
    return time(int(match[1]), int(match[2]))


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A device-local window, ``start`` inclusive, ``end`` exclusive, during which nothing is
    sent. It crosses midnight when ``end < start`` (21:00-08:00)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        for bound in (self.start, self.end):
            _check_local(bound)
        if self.start == self.end:
            raise ValueError(
                f'quiet hours must start and end at different times, got {self}; use "off" for none'
            )

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def covers(self, clock: time) -> bool:
        """Whether a wall-clock reading lies inside the window."""
        if self.crosses_midnight:
            return clock >= self.start or clock < self.end
        return self.start <= clock < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet_hours(text: str) -> QuietHours | None:
    """``"21:00-08:00"`` → QuietHours(21:00, 08:00); ``"off"`` → None."""
    stripped = text.strip()
    if stripped.lower() == "off":
        return None
    parts = stripped.split("-")
    clocks = [_CLOCK.fullmatch(part.strip()) for part in parts]
    if len(parts) != 2 or None in clocks:
        raise ValueError(f"quiet hours must be {_QUIET_HOURS_FORM}, got {text!r}")
    start, end = (time(int(m[1]), int(m[2])) for m in clocks if m is not None)
    return QuietHours(start, end)


def zone_of(name: str | None, default: ZoneInfo) -> ZoneInfo:
    """The device's zone, or ``default`` when it has none or it names no zone this machine's
    time zone database knows."""
    if name is None:
        return default
    zone = _zone(name)
    return default if zone is None else zone


# Bounded: names come from devices, and a cache keyed by whatever they send must not grow
# without limit. Unknown names are cached too (as None), so a bad name costs one lookup.
@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    if name == "localtime":
        # A file in the zone directory of many systems: the server's own zone, never a device's.
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: not a relative key ("/etc/passwd", "../x", ""), or a corrupt file.
        return None


def next_local_occurrence(local: time, zone: ZoneInfo, after: datetime) -> datetime:
    """The first instant at or after ``after`` that ``local`` names in ``zone`` (see the module
    docstring for the gap and fold rules), in UTC. Less than a day after ``after``, plus the
    hour (or whatever) the clocks fall back by in between."""
    _check_local(local)
    after = _utc(after, "after")
    today = after.astimezone(zone).date()
    # Instants named on successive dates only increase, so the first at or after `after` is
    # the answer. Yesterday's can still be ahead when a gap carried it into today (a zone
    # that skips a whole date, as Pacific/Apia did in 2011); two days ahead covers that skip.
    for days in range(-1, 3):
        candidate = _named_instant(today + days * _ONE_DAY, local, zone)
        if candidate >= after:
            return candidate
    raise AssertionError(f"no {local} in {zone} within two days of {after}")  # pragma: no cover


def quiet_until(window: QuietHours, zone: ZoneInfo, at: datetime) -> datetime | None:
    """None when ``at`` is outside quiet hours in ``zone``; otherwise the UTC instant they end,
    which is itself outside them.

    A window ends at the instant its end names: after a spring-forward gap that swallowed it
    (a window ending at 02:30 on Warsaw's spring-forward night ends at 03:00 CEST), at the
    first occurrence when the clocks fall back over it."""
    at = _utc(at, "at")
    end = _window_end(window, zone, at)
    if end is None:
        return None
    # Two windows can touch: when one date's window ends and the next one's starts in the
    # same gap (or a skipped date), the first ends at the very instant the second starts.
    for _ in range(3):
        later = _window_end(window, zone, end)
        if later is None:
            return end
        end = later
    raise AssertionError(f"quiet hours {window} in {zone} never end after {at}")  # pragma: no cover


def due_at(
    *,
    released_at: datetime,
    zone: ZoneInfo,
    local_time: time | None,
    quiet: QuietHours | None,
) -> datetime:
    """When a device's send becomes due once its wave is released: at the release, or at the
    next ``local_time`` in the device's zone at or after it; then, if that falls in quiet hours,
    when they end. Never inside quiet hours, never before the release."""
    due = _utc(released_at, "released_at")
    if local_time is not None:
        due = next_local_occurrence(local_time, zone, due)
    if quiet is not None:
        due = quiet_until(quiet, zone, due) or due
    return due


def deadline(
    *,
    created_at: datetime,
    ttl_seconds: int | None,
    expires_at: datetime | None,
    max_lifetime_seconds: int | None,
) -> datetime | None:
    """The instant after which nothing of a campaign may be sent: the earliest of
    ``created_at + ttl_seconds`` (0 or None: content that does not go stale),
    ``expires_at`` and ``created_at + max_lifetime_seconds`` (None: no maximum). None when no
    limit applies."""
    created_at = _utc(created_at, "created_at")
    limits: list[datetime] = []
    if ttl_seconds is not None:
        if ttl_seconds < 0:
            raise ValueError(f"ttl_seconds must be >= 0, got {ttl_seconds}")
        if ttl_seconds > 0:
            limits.append(created_at + timedelta(seconds=ttl_seconds))
    if expires_at is not None:
        limits.append(_utc(expires_at, "expires_at"))
    if max_lifetime_seconds is not None:
        if max_lifetime_seconds <= 0:
            raise ValueError(f"max_lifetime_seconds must be > 0, got {max_lifetime_seconds}")
        limits.append(created_at + timedelta(seconds=max_lifetime_seconds))
    return min(limits, default=None)


def seconds_left(deadline: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` to ``deadline``, rounded down, never negative: what a
    provider may still hold the notification for (FCM ``ttl``; APNs ``apns-expiration`` is
    ``now`` plus this, as an epoch). 0 means the deadline has come: do not send."""
    left = _utc(deadline, "deadline") - _utc(now, "now")
    return max(0, left // timedelta(seconds=1))


def _named_instant(day: date, local: time, zone: ZoneInfo) -> datetime:
    """The UTC instant ``local`` names on ``day`` in ``zone``: its first occurrence, or the end
    of the spring-forward gap it falls in."""
    wall = datetime.combine(day, local)
    # fold=0 is the first occurrence of a repeated time (PEP 495), and for a time in a gap it
    # reads the wall clock with the offset from before the jump, which lands after the jump.
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # fold=1 reads it with the offset from after the jump, landing before it: the jump lies
    # between the two readings.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _jump(zone, min(before, first), max(before, first))


def _jump(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first whole second in (``before``, ``after``] with ``after``'s UTC offset: a
    transition between the two (the time zone database puts them on whole seconds)."""
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    offset = _offset(zone, high)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone, middle) == offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _offset(zone: ZoneInfo, epoch: int) -> timedelta | None:
    return datetime.fromtimestamp(epoch, UTC).astimezone(zone).utcoffset()


def _window_end(window: QuietHours, zone: ZoneInfo, at: datetime) -> datetime | None:
    """The end of the window (one per local date) that holds ``at``, or None."""
    today = at.astimezone(zone).date()
    # A window starting two dates back can still hold `at` when a skipped date lies between.
    for days in range(-2, 2):
        day = today + days * _ONE_DAY
        start = _named_instant(day, window.start, zone)
        if start > at:
            break
        end_day = day + _ONE_DAY if window.crosses_midnight else day
        end = _named_instant(end_day, window.end, zone)
        if at < end:
            return end
    return None


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _check_local(value: time) -> None:
    if value.tzinfo is not None:
        raise ValueError(f"a local time is a wall-clock reading without a zone, got {value!r}")
