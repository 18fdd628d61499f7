"""Local-time delivery, quiet hours and deadlines against a minute-by-minute walk of the wall
clock: exhaustively around real daylight-saving changes, and by property over random zones,
instants and windows.

The walk is the model. Each minute of UTC, read on the zone's wall clock, *names* the local
times it starts: its own reading when that is the reading's first occurrence (fold 0), plus
every reading the clocks skipped to reach it. A local time's instant on a date is the minute
that names it; quiet hours switch on at a minute naming their start and off at one naming
their end."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from app.timing.schedule import (
    QuietHours,
    deadline,
    due_at,
    next_local_occurrence,
    parse_local_time,
    parse_quiet_hours,
    quiet_until,
    seconds_left,
    zone_of,
)

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

WARSAW = ZoneInfo("Europe/Warsaw")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # DST shifts by 30 minutes
KOLKATA = ZoneInfo("Asia/Kolkata")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
EUCLA = ZoneInfo("Australia/Eucla")
CHATHAM = ZoneInfo("Pacific/Chatham")
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")
PAGO_PAGO = ZoneInfo("Pacific/Pago_Pago")
APIA = ZoneInfo("Pacific/Apia")
SANTIAGO = ZoneInfo("America/Santiago")  # changes at midnight
HAVANA = ZoneInfo("America/Havana")  # changes at midnight
TROLL = ZoneInfo("Antarctica/Troll")  # DST shifts by two hours

ZONES = [
    WARSAW,
    NEW_YORK,
    LORD_HOWE,
    KOLKATA,
    KATHMANDU,
    EUCLA,
    CHATHAM,
    KIRITIMATI,
    PAGO_PAGO,
    APIA,
    SANTIAGO,
    HAVANA,
    TROLL,
    ZoneInfo("UTC"),
]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def wall(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone)


def naive(at: datetime) -> datetime:
    return at.replace(tzinfo=None, fold=0)


# --- the model: a minute-by-minute walk ------------------------------------------------------


def named(minute: datetime, zone: ZoneInfo) -> list[datetime]:
    """The naive local readings `minute` names, in order: those the clocks skipped to reach
    it, then its own reading when that is its first occurrence."""
    now = wall(minute, zone)
    before = naive(wall(minute - MINUTE, zone))
    readings = []
    skipped = before + MINUTE
    while skipped < naive(now):
        readings.append(skipped)
        skipped += MINUTE
    if now.fold == 0:
        readings.append(naive(now))
    return readings


def ceil_minute(at: datetime) -> datetime:
    floor = at.replace(second=0, microsecond=0)
    return floor if floor == at else floor + MINUTE


def first_named(zone: ZoneInfo, after: datetime, span: timedelta) -> dict[time, datetime]:
    """For each minute of the day, the first minute at or after `after` that names it."""
    first: dict[time, datetime] = {}
    minute = ceil_minute(after)
    while minute < after + span and len(first) < 1440:
        for reading in named(minute, zone):
            first.setdefault(reading.time(), minute)
        minute += MINUTE
    return first


@dataclass
class Walk:
    """The local times each minute of [start, start + len(named) minutes) names."""

    start: datetime
    named: list[list[time]]

    @classmethod
    def of(cls, zone: ZoneInfo, start: datetime, span: timedelta) -> Walk:
        minutes = range(span // MINUTE)
        return cls(start, [[r.time() for r in named(start + m * MINUTE, zone)] for m in minutes])

    def quiet(self, window: QuietHours, zone: ZoneInfo) -> QuietWalk:
        state = window.covers(wall(self.start, zone).time())
        quiet = []
        for readings in self.named:
            for reading in readings:
                if reading == window.start:
                    state = True
                if reading == window.end:
                    state = False
            quiet.append(state)
        return QuietWalk(self.start, quiet)


@dataclass
class QuietWalk:
    """Quiet or not at each minute of the walk."""

    start: datetime
    quiet: list[bool]

    def at(self, instant: datetime) -> bool:
        return self.quiet[(instant - self.start) // MINUTE]

    def end_after(self, instant: datetime) -> datetime | None:
        """The first minute after `instant` that is not quiet; None if the walk ends first."""
        index = (instant - self.start) // MINUTE + 1
        while index < len(self.quiet):
            if not self.quiet[index]:
                return self.start + index * MINUTE
            index += 1
        return None


# --- the daylight-saving changes the exhaustive tests walk through -----------------------------


def offset(zone: ZoneInfo, at: datetime) -> timedelta:
    value = wall(at, zone).utcoffset()
    assert value is not None
    return value


@functools.cache
def transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """The instants (to the minute) `zone` changed its UTC offset during `year`."""
    found = []
    at = utc(year, 1, 1)
    while at.year == year:
        if offset(zone, at) != offset(zone, at + DAY):
            low, high = 0, 24 * 60  # minutes after `at`
            while high - low > 1:
                middle = (low + high) // 2
                if offset(zone, at + middle * MINUTE) == offset(zone, at):
                    low = middle
                else:
                    high = middle
            found.append(at + high * MINUTE)
        at += DAY
    return found


CHANGES = [
    *((WARSAW, t) for t in transitions(WARSAW, 2026)),
    *((NEW_YORK, t) for t in transitions(NEW_YORK, 2026)),
    *((LORD_HOWE, t) for t in transitions(LORD_HOWE, 2026)),
    *((CHATHAM, t) for t in transitions(CHATHAM, 2026)),
    *((SANTIAGO, t) for t in transitions(SANTIAGO, 2026)),
    *((HAVANA, t) for t in transitions(HAVANA, 2026)),
    *((TROLL, t) for t in transitions(TROLL, 2026)),
    *((EUCLA, t) for t in transitions(EUCLA, 2008)),  # its last DST, a 45-minute zone
    *((KATHMANDU, t) for t in transitions(KATHMANDU, 1986)),  # +05:30 → +05:45
    *((APIA, t) for t in transitions(APIA, 2011)),  # skipped 30 December 2011
    *((KIRITIMATI, t) for t in transitions(KIRITIMATI, 1994)),  # skipped 31 December 1994
]


def test_the_walked_changes_are_there() -> None:
    # Two a year where DST is observed; a tz database without these would make the
    # exhaustive tests below vacuous.
    assert len(CHANGES) >= 17
    assert wall(utc(2011, 12, 30, 10), APIA).date().isoformat() == "2011-12-31"


def change_id(change: tuple[ZoneInfo, datetime]) -> str:
    zone, at = change
    return f"{zone.key}@{at:%Y-%m-%dT%H:%M}"


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:30", time(9, 30)),
        ("00:00", time(0, 0)),
        ("23:59", time(23, 59)),
        (" 07:05 ", time(7, 5)),
    ],
)
def test_parse_local_time(text: str, expected: time) -> None:
    assert parse_local_time(text) == expected


@pytest.mark.parametrize(
    "text", ["", "9:30", "24:00", "23:60", "09:30:00", "0930", "09-30", "noon", "09:3", "+9:30"]
)
def test_parse_local_time_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_local_time(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("21:00-08:00", QuietHours(time(21), time(8))),
        ("01:00-05:30", QuietHours(time(1), time(5, 30))),
        (" 22:15 - 06:45 ", QuietHours(time(22, 15), time(6, 45))),
        ("off", None),
        ("OFF", None),
    ],
)
def test_parse_quiet_hours(text: str, expected: QuietHours | None) -> None:
    assert parse_quiet_hours(text) == expected
    if expected is not None:
        assert parse_quiet_hours(str(expected)) == expected


@pytest.mark.parametrize(
    "text",
    ["", "21:00", "21:00-", "21:00-08:00-09:00", "21-08", "25:00-08:00", "none", "21:00–08:00"],
)
def test_parse_quiet_hours_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r'"HH:MM-HH:MM".*"off"'):
        parse_quiet_hours(text)


def test_quiet_hours_start_and_end_differ() -> None:
    with pytest.raises(ValueError, match="different times"):
        parse_quiet_hours("08:00-08:00")
    with pytest.raises(ValueError, match="different times"):
        QuietHours(time(8), time(8))


def test_quiet_hours_refuse_a_zone() -> None:
    with pytest.raises(ValueError, match="without a zone"):
        QuietHours(time(21, tzinfo=UTC), time(8))


def test_covers() -> None:
    night = QuietHours(time(21), time(8))
    assert [night.covers(time(h)) for h in (20, 21, 23, 0, 7, 8, 12)] == [
        False, True, True, True, True, False, False,
    ]  # fmt: skip
    lunch = QuietHours(time(12), time(13, 30))
    assert [lunch.covers(t) for t in (time(11, 59), time(12), time(13, 29), time(13, 30))] == [
        False, True, True, False,
    ]  # fmt: skip


# --- zones ----------------------------------------------------------------------------------


def test_zone_of() -> None:
    assert zone_of("Asia/Kathmandu", WARSAW) is zone_of("Asia/Kathmandu", WARSAW)
    assert zone_of("Asia/Kathmandu", WARSAW).key == "Asia/Kathmandu"
    for name in (None, "", "Mars/Olympus", "europe/warsaw", "America", "/etc/passwd", "../x"):
        assert zone_of(name, WARSAW) is WARSAW
    # The server's own zone is never a device's.
    assert zone_of("localtime", NEW_YORK) is NEW_YORK


# --- next_local_occurrence: worked examples ---------------------------------------------------


@pytest.mark.parametrize(
    ("local", "zone", "after", "expected"),
    [
        # Spring forward in Warsaw (29 March 2026, 02:00 CET → 03:00 CEST): 02:30 does not
        # exist that day and names the end of the gap.
        ("02:30", WARSAW, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),
        ("02:00", WARSAW, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),
        ("03:00", WARSAW, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),
        ("01:59", WARSAW, utc(2026, 3, 28, 12), utc(2026, 3, 29, 0, 59)),
        ("03:01", WARSAW, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 1)),
        # ... and once the gap is over, the next day's.
        ("02:30", WARSAW, utc(2026, 3, 29, 1, 0, 1), utc(2026, 3, 30, 0, 30)),
        # Fall back (25 October 2026, 03:00 CEST → 02:00 CET): the first 02:30 ...
        ("02:30", WARSAW, utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30)),
        # ... and between the two, not the repeat but the next day's.
        ("02:30", WARSAW, utc(2026, 10, 25, 0, 45), utc(2026, 10, 26, 1, 30)),
        # From inside the repeat itself: St John's fell back at 00:01 NDT on 28 October 1990
        # (02:31 UTC), so its 00:00 came at 02:30 UTC and its repeat at 03:30 names nothing.
        ("00:00", ZoneInfo("America/St_Johns"), utc(1990, 10, 28, 2, 31), utc(1990, 10, 29, 3, 30)),
        ("09:30", WARSAW, utc(2026, 10, 24, 12), utc(2026, 10, 25, 8, 30)),
        ("09:30", NEW_YORK, utc(2026, 3, 7, 20), utc(2026, 3, 8, 13, 30)),  # EDT after the change
        ("02:15", NEW_YORK, utc(2026, 3, 7, 20), utc(2026, 3, 8, 7)),  # gap 02:00-03:00 EST→EDT
        # Lord Howe springs forward 30 minutes at 02:00 (+10:30 → +11).
        ("02:10", LORD_HOWE, utc(2026, 10, 3, 12), utc(2026, 10, 3, 15, 30)),
        ("02:30", LORD_HOWE, utc(2026, 10, 3, 12), utc(2026, 10, 3, 15, 30)),
        ("02:31", LORD_HOWE, utc(2026, 10, 3, 12), utc(2026, 10, 3, 15, 31)),
        # Half-hour and 45-minute zones.
        ("09:30", KOLKATA, utc(2026, 6, 1), utc(2026, 6, 1, 4)),
        ("09:30", KATHMANDU, utc(2026, 6, 1), utc(2026, 6, 1, 3, 45)),
        ("09:30", EUCLA, utc(2026, 6, 1), utc(2026, 6, 1, 0, 45)),
        ("09:30", EUCLA, utc(2026, 6, 1, 0, 45), utc(2026, 6, 1, 0, 45)),  # exactly then: now
        ("09:30", EUCLA, utc(2026, 6, 1, 0, 45, 1), utc(2026, 6, 2, 0, 45)),
        ("09:30", CHATHAM, utc(2026, 6, 1), utc(2026, 6, 1, 20, 45)),  # +12:45
        ("09:30", CHATHAM, utc(2026, 1, 1), utc(2026, 1, 1, 19, 45)),  # +13:45 in summer
        # Either side of the date line.
        ("09:00", KIRITIMATI, utc(2026, 6, 1), utc(2026, 6, 1, 19)),  # 14:00 on 1 June there
        ("09:00", PAGO_PAGO, utc(2026, 6, 1), utc(2026, 6, 1, 20)),  # 13:00 on 31 May there
        # Apia skipped 30 December 2011: its 09:30 named the first instant of the 31st.
        ("09:30", APIA, utc(2011, 12, 29, 20), utc(2011, 12, 30, 10)),
        ("09:30", APIA, utc(2011, 12, 30, 10, 0, 1), utc(2011, 12, 30, 19, 30)),
    ],
)
def test_next_local_occurrence_examples(
    local: str, zone: ZoneInfo, after: datetime, expected: datetime
) -> None:
    got = next_local_occurrence(parse_local_time(local), zone, after)
    assert got == expected
    assert got.tzinfo is UTC


def test_next_local_occurrence_takes_any_aware_instant() -> None:
    after = datetime(2026, 6, 1, 11, 0, tzinfo=WARSAW)  # 09:00 UTC
    assert next_local_occurrence(time(11, 30), WARSAW, after) == utc(2026, 6, 1, 9, 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_local_occurrence(time(9), WARSAW, datetime(2026, 6, 1))  # noqa: DTZ001


# --- next_local_occurrence: exhaustive across real changes ------------------------------------


def check_occurrences(zone: ZoneInfo, after: datetime) -> None:
    """Every minute of the day, against the walk."""
    first = first_named(zone, after, 2 * DAY)
    assert len(first) == 1440
    for index in range(1440):
        local = time(index // 60, index % 60)
        assert next_local_occurrence(local, zone, after) == first[local], (zone, after, local)


@pytest.mark.parametrize("change", CHANGES, ids=change_id)
def test_every_local_time_around_a_change(change: tuple[ZoneInfo, datetime]) -> None:
    zone, at = change
    for after in (
        at - 25 * HOUR,
        at - 90 * MINUTE,
        at - MINUTE,
        at,
        at + MINUTE + 7 * timedelta(seconds=1),
    ):
        check_occurrences(zone, after)


@pytest.mark.parametrize("zone", [KOLKATA, KATHMANDU, EUCLA, KIRITIMATI, PAGO_PAGO], ids=str)
def test_every_local_time_on_an_ordinary_day(zone: ZoneInfo) -> None:
    check_occurrences(zone, utc(2026, 5, 17, 13, 27))


# --- next_local_occurrence: properties ---------------------------------------------------------

ALL_ZONES = [
    *sorted(z.key for z in ZONES),
    "Africa/Casablanca",  # DST suspended during Ramadan, changes twice more a year
    "America/St_Johns",  # -03:30
    "Asia/Tehran",
    "Europe/Dublin",  # negative DST in the tz database
    "America/Sao_Paulo",
    "Australia/Adelaide",
]

zones = st.sampled_from(ALL_ZONES).map(ZoneInfo)
locals_ = st.builds(time, st.integers(0, 23), st.integers(0, 59))
seconds = st.integers(0, 59)


@st.composite
def instants(draw: st.DrawFn, zone: ZoneInfo) -> datetime:
    """Half the time within 30 hours of one of the zone's changes, where the rules bite."""
    year = draw(st.integers(1990, 2036))
    changes = transitions(zone, year)
    near_a_change = draw(st.booleans())
    if changes and near_a_change:
        base = draw(st.sampled_from(changes))
        return (
            base
            + draw(st.integers(-30 * 60, 30 * 60)) * MINUTE
            + draw(seconds) * timedelta(seconds=1)
        )
    return utc(year, 1, 1) + draw(st.integers(0, 365 * 24 * 3600 - 1)) * timedelta(seconds=1)


# A zone with an instant of it, drawn as one value so that @example can name both.
zoned_instants = zones.flatmap(lambda zone: st.tuples(st.just(zone), instants(zone)))


@settings(max_examples=150, deadline=None)
@given(st.data(), zones, locals_)
def test_next_local_occurrence_is_the_first_instant_naming_it(
    data: st.DataObject, zone: ZoneInfo, local: time
) -> None:
    after = data.draw(instants(zone))
    got = next_local_occurrence(local, zone, after)
    assert got >= after
    # A day, plus however far the clocks fell back in between, or in the day before `after`
    # when `after` lies in the repeat of a fall-back: that repeat names nothing, so the next
    # reading is a day after the first one (St John's, 28 Oct 1990: 00:00 came at 02:30 UTC,
    # the clocks fell back at 02:31, and from then the next first 00:00 was 29 Oct 03:30 UTC).
    fell_between = max(timedelta(0), offset(zone, after) - offset(zone, got))
    fell_before = max(timedelta(0), offset(zone, after - DAY) - offset(zone, after))
    assert got - after <= DAY + fell_between + fell_before
    assert got.second == 0 and got.microsecond == 0
    # `got` names `local`: its first reading of it, or the end of a gap that swallowed it.
    assert local in [reading.time() for reading in named(got, zone)]
    reading = wall(got, zone)
    if reading.time() != local:
        assert offset(zone, got) > offset(zone, got - MINUTE)  # a gap ends here
    else:
        assert reading.fold == 0
    # ... and no earlier minute from `after` on does.
    minute = ceil_minute(after)
    while minute < got:
        assert local not in [reading.time() for reading in named(minute, zone)], minute
        minute += MINUTE


# --- quiet_until ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "zone", "at", "expected"),
    [
        ("21:00-08:00", WARSAW, utc(2026, 6, 1, 18, 59), None),  # 20:59 CEST
        ("21:00-08:00", WARSAW, utc(2026, 6, 1, 19), utc(2026, 6, 2, 6)),
        ("21:00-08:00", WARSAW, utc(2026, 6, 2, 5, 59, 59), utc(2026, 6, 2, 6)),
        ("21:00-08:00", WARSAW, utc(2026, 6, 2, 6), None),
        ("12:00-13:30", WARSAW, utc(2026, 6, 1, 10, 15), utc(2026, 6, 1, 11, 30)),
        # A window ending at 02:30 on spring-forward night ends at the first instant after
        # the gap, 03:00 CEST.
        ("21:00-02:30", WARSAW, utc(2026, 3, 28, 23), utc(2026, 3, 29, 1)),
        ("21:00-02:30", WARSAW, utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1)),
        ("21:00-02:30", WARSAW, utc(2026, 3, 29, 1), None),
        # The night is an hour shorter: 22:00 CET to 08:00 CEST.
        ("22:00-08:00", WARSAW, utc(2026, 3, 28, 21), utc(2026, 3, 29, 6)),
        # ... and an hour longer in October.
        ("22:00-08:00", WARSAW, utc(2026, 10, 24, 20), utc(2026, 10, 25, 7)),
        # Starting inside the gap: from its end.
        ("02:15-06:00", WARSAW, utc(2026, 3, 29, 0, 59), None),
        ("02:15-06:00", WARSAW, utc(2026, 3, 29, 1), utc(2026, 3, 29, 4)),
        # Falling back over the end: it ends at the first 02:30, and the repeated half hour
        # after it is not quiet again.
        ("21:00-02:30", WARSAW, utc(2026, 10, 25, 0, 29), utc(2026, 10, 25, 0, 30)),
        ("21:00-02:30", WARSAW, utc(2026, 10, 25, 1, 10), None),  # 02:10 CET, the repeat
        # Falling back over the start: quiet from the first 02:30 to 06:00 CET, the repeat of
        # 02:00-02:30 included.
        ("02:30-06:00", WARSAW, utc(2026, 10, 25, 0, 29), None),
        ("02:30-06:00", WARSAW, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 5)),
        ("02:30-06:00", WARSAW, utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 5)),
        # Both ends in the gap: that night has no quiet hours.
        ("02:10-02:40", WARSAW, utc(2026, 3, 29, 1), None),
        # ... and when the window is nearly a day, the two nights touch in the gap.
        ("02:40-02:10", WARSAW, utc(2026, 3, 28, 12), utc(2026, 3, 30, 0, 10)),
        # Lord Howe springs forward 30 minutes at 02:00.
        ("22:00-02:15", LORD_HOWE, utc(2026, 10, 3, 15), utc(2026, 10, 3, 15, 30)),
        ("09:00-10:00", KATHMANDU, utc(2026, 6, 1, 3, 30), utc(2026, 6, 1, 4, 15)),
        ("23:00-07:00", CHATHAM, utc(2026, 6, 1, 12), utc(2026, 6, 1, 18, 15)),
        # Apia skipped 30 December 2011: the night of the 29th ended as the 31st began, and
        # the night of the 30th began then.
        ("21:00-08:00", APIA, utc(2011, 12, 30, 8), utc(2011, 12, 30, 18)),
    ],
)
def test_quiet_until_examples(
    window: str, zone: ZoneInfo, at: datetime, expected: datetime | None
) -> None:
    quiet = parse_quiet_hours(window)
    assert quiet is not None
    assert quiet_until(quiet, zone, at) == expected


def check_quiet(window: QuietHours, zone: ZoneInfo, walk: QuietWalk, at: datetime) -> None:
    got = quiet_until(window, zone, at)
    if not walk.at(at):
        assert got is None, (window, zone, at)
        return
    expected = walk.end_after(at)
    assert expected is not None, "walk too short"
    assert got == expected, (window, zone, at)


def windows_around(zone: ZoneInfo, at: datetime) -> Iterator[QuietHours]:
    """Windows with ends just before, in, and just after the wall-clock jump at `at`."""
    before = wall(at - MINUTE, zone).time()
    after = wall(at, zone).time()
    points = {before, after, time(21), time(8)}
    points |= {(datetime.combine(at.date(), t) + d).time() for t, d in (
        (before, -30 * MINUTE), (before, 15 * MINUTE), (after, 30 * MINUTE),
    )}  # fmt: skip
    for start in sorted(points):
        for end in sorted(points):
            if start != end:
                yield QuietHours(start, end)


@pytest.mark.parametrize("change", CHANGES, ids=change_id)
def test_quiet_hours_around_a_change(change: tuple[ZoneInfo, datetime]) -> None:
    zone, at = change
    start = at - 30 * HOUR
    # Every minute within 90 minutes of the change, and one in 37 over the day either side.
    checked = [at + m * MINUTE for m in range(-90, 91)]
    checked += [at + m * MINUTE for m in range(-26 * 60, 26 * 60, 37)]
    walk = Walk.of(zone, start, 80 * HOUR)
    for window in windows_around(zone, at):
        quiet = walk.quiet(window, zone)
        for instant in checked:
            check_quiet(window, zone, quiet, instant)


@st.composite
def quiet_hours(draw: st.DrawFn) -> QuietHours:
    start, end = draw(locals_), draw(locals_)
    assume(start != end)
    return QuietHours(start, end)


# Two nights run into each other when a spring-forward gap swallows the end of one and the
# start of the next: in Warsaw, 02:40-02:10 is quiet from 02:40 on 28 March 2026 to 02:10 on
# the 30th. From this instant an 80-hour walk ended before those quiet hours did.
@example((WARSAW, utc(2026, 3, 27, 20)), QuietHours(time(2, 40), time(2, 10)))
@settings(max_examples=40, deadline=None)
@given(zoned_instants, quiet_hours())
def test_quiet_until_agrees_with_the_walk(
    zoned: tuple[ZoneInfo, datetime], window: QuietHours
) -> None:
    zone, at = zoned
    # The instants checked reach a day past `at`, and the quiet hours holding the last of them
    # can last two nights more (two that run into each other, plus a fall-back).
    walk = Walk.of(zone, at.replace(second=0) - 30 * HOUR, 110 * HOUR).quiet(window, zone)
    for minutes in range(0, 24 * 60, 7):
        check_quiet(window, zone, walk, at + minutes * MINUTE)


@settings(max_examples=150, deadline=None)
@given(st.data(), zones, quiet_hours())
def test_quiet_until_ends_outside(data: st.DataObject, zone: ZoneInfo, window: QuietHours) -> None:
    at = data.draw(instants(zone))
    end = quiet_until(window, zone, at)
    if end is None:
        return
    assert end > at
    assert quiet_until(window, zone, end) is None
    # Every minute up to the end is quiet, and maps to the same end.
    minute = ceil_minute(at)
    while minute < end:
        assert quiet_until(window, zone, minute) == end
        minute += 13 * MINUTE


# --- due_at -----------------------------------------------------------------------------------


def test_due_at_examples() -> None:
    released = utc(2026, 6, 1, 18, 30)  # 20:30 CEST
    night = QuietHours(time(21), time(8))
    assert due_at(released_at=released, zone=WARSAW, local_time=None, quiet=None) == released
    assert due_at(released_at=released, zone=WARSAW, local_time=None, quiet=night) == released
    # 09:30 tomorrow, outside the night.
    assert due_at(released_at=released, zone=WARSAW, local_time=time(9, 30), quiet=night) == utc(
        2026, 6, 2, 7, 30
    )
    # 22:00 tonight falls in the night: it waits for 08:00.
    assert due_at(released_at=released, zone=WARSAW, local_time=time(22), quiet=night) == utc(
        2026, 6, 2, 6
    )
    late = utc(2026, 6, 1, 20)  # 22:00 CEST
    assert due_at(released_at=late, zone=WARSAW, local_time=None, quiet=night) == utc(2026, 6, 2, 6)
    # The same release is 10:00 the next morning on Kiritimati: not quiet.
    assert due_at(released_at=late, zone=KIRITIMATI, local_time=None, quiet=night) == late


# Released as Warsaw's two nights around 29 March 2026 run into each other (see
# test_quiet_until_agrees_with_the_walk): held 46.5 hours, until 02:10 on the 30th.
@example((WARSAW, utc(2026, 3, 28, 1, 40)), None, QuietHours(time(2, 40), time(2, 10)))
@settings(max_examples=200, deadline=None)
@given(zoned_instants, st.none() | locals_, st.none() | quiet_hours())
def test_due_at_is_never_quiet(
    zoned: tuple[ZoneInfo, datetime], local: time | None, window: QuietHours | None
) -> None:
    zone, released = zoned
    due = due_at(released_at=released, zone=zone, local_time=local, quiet=window)
    assert due >= released
    assert due.tzinfo is UTC
    planned = released if local is None else next_local_occurrence(local, zone, released)
    if window is None:
        assert due == planned
        return
    assert quiet_until(window, zone, due) is None
    assert due == (quiet_until(window, zone, planned) or planned)
    # Held no longer than the night holding `planned` lasts: under a day, plus a fall-back.
    # Only a spring-forward gap that swallows one night's end and the next one's start joins
    # two nights; then the clocks jumped forward in between, and the two last under two days.
    held = due - planned
    if held > DAY + 2 * HOUR:
        assert any(
            offset(zone, planned + m * MINUTE) > offset(zone, planned + (m - 1) * MINUTE)
            for m in range(1, held // MINUTE + 1)
        )
    assert held <= 2 * DAY + 2 * HOUR


# --- deadline and seconds_left ----------------------------------------------------------------

CREATED = utc(2026, 6, 1, 12)


@pytest.mark.parametrize(
    ("ttl", "expires", "lifetime", "expected"),
    [
        (None, None, None, None),
        (0, None, None, None),  # ttl 0: content that does not go stale
        (3600, None, None, CREATED + HOUR),
        (None, CREATED + 2 * HOUR, None, CREATED + 2 * HOUR),
        (None, None, 7200, CREATED + 2 * HOUR),
        (3600, CREATED + 2 * HOUR, 86400, CREATED + HOUR),
        (3 * 3600, CREATED + 2 * HOUR, 86400, CREATED + 2 * HOUR),
        (3 * 3600, CREATED + 5 * HOUR, 4 * 3600, CREATED + 3 * HOUR),
        (0, CREATED + 5 * HOUR, 4 * 3600, CREATED + 4 * HOUR),
        (None, CREATED - HOUR, 4 * 3600, CREATED - HOUR),  # already past: nothing is sent
    ],
)
def test_deadline(
    ttl: int | None, expires: datetime | None, lifetime: int | None, expected: datetime | None
) -> None:
    got = deadline(
        created_at=CREATED, ttl_seconds=ttl, expires_at=expires, max_lifetime_seconds=lifetime
    )
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(
    st.none() | st.integers(0, 10**7),
    st.none() | st.integers(-(10**7), 10**7),
    st.none() | st.integers(1, 10**7),
)
def test_deadline_is_the_earliest_limit(
    ttl: int | None, expires_in: int | None, lifetime: int | None
) -> None:
    expires = None if expires_in is None else CREATED + timedelta(seconds=expires_in)
    got = deadline(
        created_at=CREATED, ttl_seconds=ttl, expires_at=expires, max_lifetime_seconds=lifetime
    )
    limits = [
        limit
        for limit in (
            CREATED + timedelta(seconds=ttl) if ttl else None,
            expires,
            None if lifetime is None else CREATED + timedelta(seconds=lifetime),
        )
        if limit is not None
    ]
    if not limits:
        assert got is None
        return
    assert got in limits
    assert all(got <= limit for limit in limits)


def test_deadline_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        deadline(created_at=CREATED, ttl_seconds=-1, expires_at=None, max_lifetime_seconds=None)
    with pytest.raises(ValueError, match="max_lifetime_seconds"):
        deadline(created_at=CREATED, ttl_seconds=None, expires_at=None, max_lifetime_seconds=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        deadline(
            created_at=datetime(2026, 6, 1),  # noqa: DTZ001
            ttl_seconds=None,
            expires_at=None,
            max_lifetime_seconds=None,
        )


def test_deadline_in_another_zone_is_the_same_instant() -> None:
    expires = datetime(2026, 6, 1, 15, tzinfo=KATHMANDU)  # 09:15 UTC
    got = deadline(
        created_at=CREATED - DAY, ttl_seconds=None, expires_at=expires, max_lifetime_seconds=None
    )
    assert got == utc(2026, 6, 1, 9, 15)
    assert got is not None and got.tzinfo is UTC


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (timedelta(hours=1), 3600),
        (timedelta(seconds=59, microseconds=999_999), 59),
        (timedelta(microseconds=1), 0),
        (timedelta(0), 0),
        (-timedelta(microseconds=1), 0),
        (-timedelta(days=3), 0),
        (timedelta(days=28), 28 * 86400),
    ],
)
def test_seconds_left(left: timedelta, expected: int) -> None:
    assert seconds_left(CREATED + left, CREATED) == expected
