"""The pure parts of the timing benchmark: which zones, which local time, which window, and
whether a recorded send fell inside quiet hours."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from datetime import time as clock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wavecast_tools.bench.timing_rules import (
    burst_allowance,
    busiest_second,
    choose_local_time,
    choose_quiet_window,
    choose_zones,
    classify,
    first_sends,
    in_quiet_hours,
    is_place,
    local_campaign_window,
    local_instants,
    offset_groups,
    window_ends,
    zone_kinds,
)

from app.timing.schedule import QuietHours

AVAILABLE = sorted(zoneinfo.available_timezones())
ZONES = choose_zones(AVAILABLE, 400)
# Instants through a whole year: every season's offsets. Hypothesis takes naive bounds and
# attaches the zone itself.
instants = st.datetimes(
    min_value=datetime(2026, 1, 1),  # noqa: DTZ001
    max_value=datetime(2026, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def test_zones_are_400_distinct_places_the_same_whatever_the_order() -> None:
    assert len(ZONES) == len(set(ZONES)) == 400
    assert all(is_place(z) for z in ZONES)
    assert choose_zones(reversed(AVAILABLE), 400) == ZONES
    assert not any(is_place(name) for name in ("Etc/GMT+5", "US/Eastern", "EST5EDT", "UTC"))


def test_zones_hold_half_hour_45_minute_zones_and_both_sides_of_the_date_line() -> None:
    kinds = {kind for zone in ZONES for kind in zone_kinds(zone)}
    assert kinds == {"half-hour", "45-minute", "east", "west"}
    assert {"Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", "Pacific/Kiritimati"} <= set(ZONES)
    assert "Pacific/Honolulu" in ZONES or "Pacific/Pago_Pago" in ZONES


@pytest.mark.parametrize("count", [4, 9, 50])
def test_a_few_zones_still_hold_one_of_each_kind(count: int) -> None:
    zones = choose_zones(AVAILABLE, count)
    assert len(zones) == count
    assert {kind for zone in zones for kind in zone_kinds(zone)} == {
        "half-hour",
        "45-minute",
        "east",
        "west",
    }


def test_more_zones_than_places_is_refused() -> None:
    with pytest.raises(ValueError, match="place zones"):
        choose_zones(["Europe/Warsaw", "Etc/UTC"], 2)


def test_the_date_line_groups_zones_a_day_apart() -> None:
    groups = offset_groups(
        ["Pacific/Kiritimati", "Pacific/Honolulu"], datetime(2026, 12, 6, tzinfo=UTC)
    )
    assert list(groups.values()) == [["Pacific/Honolulu", "Pacific/Kiritimati"]]


@settings(deadline=None, max_examples=30)  # 400 zones per example; the machine is shared
@given(instants)
def test_the_local_time_is_reached_by_the_largest_group_at_the_next_whole_minute(
    now: datetime,
) -> None:
    plan = choose_local_time(ZONES, now)
    assert plan.instant >= now
    assert plan.instant - now < timedelta(minutes=1)
    assert plan.instant.second == plan.instant.microsecond == 0
    groups = offset_groups(ZONES, plan.instant)
    assert len(plan.group) == max(len(g) for g in groups.values())
    reached = local_instants(ZONES, plan.local_time, now)
    # Exactly the group reaches it then; every other zone at least 15 minutes away.
    assert {z for z, at in reached.items() if at == plan.instant} == set(plan.group)
    assert all(
        abs(at - plan.instant) >= timedelta(minutes=15)
        for z, at in reached.items()
        if z not in plan.group
    )


def test_a_worked_local_time() -> None:
    # 06:38:20 UTC on 6 December: the next minute is 06:39; UTC+1 is the largest group.
    plan = choose_local_time(ZONES, datetime(2026, 12, 6, 6, 38, 20, tzinfo=UTC))
    assert plan.local_time == "07:39"
    assert plan.instant == datetime(2026, 12, 6, 6, 39, tzinfo=UTC)
    assert "Europe/Warsaw" in plan.group or "Europe/Berlin" in plan.group


@settings(deadline=None, max_examples=30)  # 400 zones per example; the machine is shared
@given(instants)
def test_the_quiet_window_ends_for_the_largest_group_and_starts_11_hours_behind(
    now: datetime,
) -> None:
    plan = choose_quiet_window(ZONES, now + timedelta(seconds=75))
    until = plan.end + timedelta(seconds=30)
    kinds = classify(ZONES, plan.window, now, until)
    assert sorted(z for zs in kinds.values() for z in zs) == sorted(ZONES)
    ends = window_ends(kinds["ends"], plan.window, now)
    assert set(ends.values()) == {plan.end}
    assert len(kinds["ends"]) == max(len(g) for g in offset_groups(ZONES, plan.end).values())
    for zone in kinds["starts"]:
        assert not in_quiet_hours(plan.window, zone, plan.end - timedelta(microseconds=1))
        assert in_quiet_hours(plan.window, zone, plan.end)


def test_a_recorded_send_is_read_in_its_devices_zone() -> None:
    window = QuietHours(clock(21), clock(8))
    sent = datetime(2026, 12, 6, 6, 30, tzinfo=UTC)  # 07:30 in Warsaw, 06:30 in London
    assert in_quiet_hours(window, "Europe/Warsaw", sent)
    assert in_quiet_hours(window, "Europe/London", sent)
    assert not in_quiet_hours(window, "Asia/Kolkata", sent)  # 12:00
    # The window's end is outside it; its start inside.
    assert not in_quiet_hours(window, "Europe/Warsaw", datetime(2026, 12, 6, 7, tzinfo=UTC))
    assert in_quiet_hours(window, "Europe/Warsaw", datetime(2026, 12, 6, 20, tzinfo=UTC))
    # Half-hour and 45-minute zones read their own wall clock.
    assert in_quiet_hours(window, "Asia/Kathmandu", datetime(2026, 12, 6, 2, 14, tzinfo=UTC))
    assert not in_quiet_hours(window, "Asia/Kathmandu", datetime(2026, 12, 6, 2, 15, tzinfo=UTC))


def test_the_local_campaign_window_leaves_the_two_hours_around_its_local_time() -> None:
    window = local_campaign_window("00:30")
    assert window == QuietHours(clock(1, 30), clock(23, 30))
    assert not window.covers(clock(0, 30))
    assert not window.covers(clock(23, 45))
    assert window.covers(clock(12))


def test_first_sends_count_only_instants_in_the_run() -> None:
    at = datetime(2026, 12, 6, 7, tzinfo=UTC)
    instants = {"a": at, "b": at, "c": at + timedelta(hours=1), "d": at - timedelta(hours=1)}
    first = {"a": at + timedelta(seconds=1.5), "c": at + timedelta(hours=1)}
    result = first_sends(
        instants, first, since=at - timedelta(minutes=5), until=at + timedelta(minutes=1)
    )
    assert result.delays == {"a": 1.5}
    assert result.unsent == ["b"]


def test_the_burst_allowance_is_one_batch_of_the_paced_rate() -> None:
    assert burst_allowance(1_000) == 38  # 4 % of 970
    assert burst_allowance(100_000) == 500
    assert burst_allowance(10) == 1


def test_the_busiest_second_says_where_it_starts() -> None:
    assert busiest_second([]) == (0, None)
    assert busiest_second([5.0, 5.6, 5.9, 6.1, 6.2, 6.5, 7.5]) == (5, 5.6)
    # Half-open: an instant exactly one second later is the next window's.
    assert busiest_second([1.0, 2.0, 3.0]) == (1, 1.0)
