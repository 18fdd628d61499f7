"""The preview's send schedule: when each time zone's share of the audience would first be
sent if the first wave were released now, counted in one grouped query over the audience.

Expected instants are worked out here from the zone's wall clock with `zoneinfo` alone, not
with `app.timing`, so a wrong rule there shows here too.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.auth.models import Scope
from app.campaigns.service import zone_schedule
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.devices import service as devices_service
from app.devices.schemas import DeviceRegistration
from app.main import create_app
from app.runtime import Runtime
from app.timing.schedule import QuietHours
from tests.conftest import KeyMaker, bearer
from tests.support import LIVE_CONTENT, campaign_body

ANDROID_ONLY = {"all": [{"field": "platform", "op": "eq", "value": "android"}]}
# Android devices by stored zone (None: none set). Kolkata, Adelaide and St John's keep
# half-hour offsets; "Mars/Olympus" names no zone, so its device uses the default (UTC) too.
ZONES: dict[str | None, int] = {
    "Asia/Kolkata": 3,
    "Australia/Adelaide": 2,
    "America/St_Johns": 4,
    "Europe/Warsaw": 1,
    "UTC": 2,
    None: 5,
    "Mars/Olympus": 1,
}
EXPECTED_COUNTS = {
    "Asia/Kolkata": 3,
    "Australia/Adelaide": 2,
    "America/St_Johns": 4,
    "Europe/Warsaw": 1,
    "UTC": 8,
}


async def add_zoned_devices(db: Runtime) -> None:
    """The android devices of ZONES, and two iOS devices in Tokyo outside the audience."""
    now = utcnow()
    rows = []
    for zone, count in [*ZONES.items(), ("Asia/Tokyo", 2)]:
        platform = "ios" if zone == "Asia/Tokyo" else "android"
        for _ in range(count):
            known = zone if zone != "Mars/Olympus" else None
            reg = DeviceRegistration(
                token=f"{platform}-{uuid.uuid4().hex}",
                platform=platform,  # type: ignore[arg-type]
                timezone=known,
                apns_environment="production" if platform == "ios" else None,  # type: ignore[arg-type]
            )
            row = devices_service.registration_row(reg, now)
            # A name the registration call would refuse, as an older row could hold.
            row["timezone"] = zone
            rows.append(row)
    async with unit_of_work(db.sessionmaker) as session:
        await devices_service.register_many(session, rows)


def body(**overrides: Any) -> dict[str, Any]:
    """An android-only campaign whose content never goes stale (ttl 0), unless overridden."""
    return campaign_body(
        content={**LIVE_CONTENT, "ttl_seconds": 0},
        audience={"rules": ANDROID_ONLY},
        **overrides,
    )


def next_wall(zone: ZoneInfo, clock: time, after: datetime) -> datetime:
    """The first instant at or after `after` at which the zone's wall clock reads `clock`
    (for clocks no daylight-saving change skips in the zones used here)."""
    day: date = after.astimezone(zone).date() - timedelta(days=1)
    while True:
        candidate = datetime.combine(day, clock, tzinfo=zone)
        if candidate >= after:
            return candidate.astimezone(UTC)
        day += timedelta(days=1)


def hhmm(text: str) -> time:
    return time.fromisoformat(text)


@pytest.fixture
async def writer(make_key: KeyMaker) -> dict[str, str]:
    return bearer(await make_key(Scope.campaigns_read, Scope.campaigns_write))


async def preview(
    client: httpx.AsyncClient, headers: dict[str, str], payload: dict[str, Any]
) -> tuple[dict[str, Any], datetime, datetime]:
    """The preview, and the instants just before and after it was asked for."""
    before = utcnow()
    answer = await client.post("/v1/campaigns/preview", json=payload, headers=headers)
    after = utcnow()
    assert answer.status_code == 200, answer.text
    return answer.json(), before, after


def by_zone(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    shares = {share["timezone"]: share for share in plan["schedule"]}
    for share in shares.values():
        share["first"] = datetime.fromisoformat(share["first_send_at"])
    return shares


async def test_each_zone_is_counted_and_first_sent_at_its_own_local_time(
    client: httpx.AsyncClient, writer: dict[str, str], db: Runtime
) -> None:
    await add_zoned_devices(db)
    rollout = {"waves": [{"percent": 1}, {"percent": 100}], "local_time": "09:30"}
    plan, before, after = await preview(client, writer, body(rollout=rollout))
    assert plan["audience_size"] == sum(EXPECTED_COUNTS.values())
    assert (plan["local_time"], plan["quiet_hours"]) == ("09:30", None)
    shares = by_zone(plan)
    # One share per zone of the audience (Tokyo's devices are not in it); devices without a
    # zone, or with one nobody knows, are sent by the default zone and counted there.
    assert {name: s["devices"] for name, s in shares.items()} == EXPECTED_COUNTS
    assert {name: s["without_zone"] for name, s in shares.items()} == {
        "Asia/Kolkata": 0,
        "Australia/Adelaide": 0,
        "America/St_Johns": 0,
        "Europe/Warsaw": 0,
        "UTC": 6,
    }
    firsts = [s["first"] for s in shares.values()]
    assert [s["timezone"] for s in plan["schedule"]] == [
        name for name, _ in sorted(shares.items(), key=lambda kv: (kv[1]["first"], kv[0]))
    ]
    assert len(set(firsts)) == len(firsts)  # five offsets, five different instants
    for name, share in shares.items():
        zone = ZoneInfo(name)
        assert share["first"].astimezone(zone).strftime("%H:%M") == "09:30", name
        assert share["local_time_there"] == "09:30"
        assert share["first"] in {next_wall(zone, hhmm("09:30"), t) for t in (before, after)}
        assert not share["after_quiet_hours"] and not share["past_deadline"]
    assert (plan["schedule_more_zones"], plan["schedule_more_devices"]) == (0, 0)


async def test_a_local_time_inside_quiet_hours_moves_to_their_end(
    client: httpx.AsyncClient, writer: dict[str, str], db: Runtime
) -> None:
    await add_zoned_devices(db)
    rollout = {"waves": [{"percent": 100}], "local_time": "22:30"}
    quiet = {"start": "21:00", "end": "08:00"}
    plan, before, after = await preview(client, writer, body(rollout=rollout, quiet_hours=quiet))
    assert plan["quiet_hours"] == "21:00-08:00"
    shares = by_zone(plan)
    assert {name: s["devices"] for name, s in shares.items()} == EXPECTED_COUNTS
    for name, share in shares.items():
        zone = ZoneInfo(name)
        wall = share["first"].astimezone(zone)
        # 22:30 is quiet there: the device waits for 08:00 the next morning, outside them.
        assert wall.strftime("%H:%M") == share["local_time_there"] == "08:00", name
        assert not (wall.time() >= time(21) or wall.time() < time(8))
        assert share["after_quiet_hours"]
        named = {next_wall(zone, hhmm("22:30"), t) for t in (before, after)}
        assert share["first"] in {next_wall(zone, hhmm("08:00"), n) for n in named}


async def test_without_a_local_time_only_zones_inside_quiet_hours_wait(
    client: httpx.AsyncClient, writer: dict[str, str], db: Runtime
) -> None:
    await add_zoned_devices(db)
    # A two-hour window around Kolkata's clock now: quiet there, and in no other zone here
    # (each is at least 4 h from Kolkata's offset).
    kolkata = ZoneInfo("Asia/Kolkata")
    clock = utcnow().astimezone(kolkata)
    start, end = (clock - timedelta(hours=1)), (clock + timedelta(hours=1))
    quiet = {"start": f"{start:%H:%M}", "end": f"{end:%H:%M}"}
    plan, before, after = await preview(client, writer, body(quiet_hours=quiet))
    assert plan["local_time"] is None
    shares = by_zone(plan)
    assert {name: s["devices"] for name, s in shares.items()} == EXPECTED_COUNTS
    held = shares.pop("Asia/Kolkata")
    assert held["after_quiet_hours"]
    assert held["local_time_there"] == quiet["end"]
    assert held["first"].astimezone(kolkata).strftime("%H:%M") == quiet["end"]
    assert held["first"] in {next_wall(kolkata, hhmm(quiet["end"]), t) for t in (before, after)}
    for name, share in shares.items():
        assert before <= share["first"] <= after, name  # at once
        assert not share["after_quiet_hours"]
        assert share["local_time_there"] == share["first"].astimezone(ZoneInfo(name)).strftime(
            "%H:%M"
        )
    # The zone that waits comes last.
    assert plan["schedule"][-1]["timezone"] == "Asia/Kolkata"


async def test_a_zone_first_sent_after_the_deadline_is_flagged(
    client: httpx.AsyncClient, writer: dict[str, str], db: Runtime
) -> None:
    await add_zoned_devices(db)
    expires = (utcnow() + timedelta(hours=12)).replace(microsecond=0)
    rollout = {"waves": [{"percent": 100}], "local_time": "09:30"}
    plan, _, _ = await preview(
        client, writer, body(rollout=rollout, expires_at=expires.isoformat())
    )
    shares = by_zone(plan).values()
    assert {s["past_deadline"] for s in shares} == {True, False}  # 09:30 spreads over a day
    for share in shares:
        assert share["past_deadline"] == (share["first"] >= expires), share


@pytest.fixture
async def quiet_deployment(db: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The API of a deployment whose quiet hours (WAVECAST_QUIET_HOURS) hold UTC's clock now."""
    clock = utcnow()
    window = f"{clock - timedelta(hours=1):%H:%M}-{clock + timedelta(hours=1):%H:%M}"
    settings = db.settings.model_copy(update={"quiet_hours": window})
    app = create_app(settings, runtime=dataclasses.replace(db, settings=settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as c:
        yield c, window


async def test_the_deployments_quiet_hours_apply_unless_the_campaign_is_critical(
    quiet_deployment: tuple[httpx.AsyncClient, str], writer: dict[str, str], db: Runtime
) -> None:
    client, window = quiet_deployment
    await add_zoned_devices(db)
    plan, _, after = await preview(client, writer, body())
    assert plan["quiet_hours"] == window
    utc = by_zone(plan)["UTC"]
    assert utc["after_quiet_hours"] and utc["first"] > after
    assert utc["local_time_there"] == window.split("-")[1]
    critical, before, after = await preview(client, writer, body(priority="critical"))
    assert critical["quiet_hours"] is None
    assert all(before <= s["first"] <= after for s in by_zone(critical).values())
    assert not any(s["after_quiet_hours"] for s in critical["schedule"])


def test_the_schedule_lists_the_earliest_zones_and_counts_the_rest() -> None:
    now = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
    counts: dict[str | None, int] = {
        "Asia/Kolkata": 3,  # 09:30 there is 04:00 UTC: passed, tomorrow's
        "Europe/Warsaw": 5,  # 08:30 UTC
        "America/New_York": 7,  # 14:30 UTC
        "Asia/Tokyo": 11,  # 00:30 UTC tomorrow
        None: 2,
        "Not/AZone": 1,
    }
    shares, more_zones, more_devices = zone_schedule(
        counts,
        now=now,
        default_zone=ZoneInfo("America/New_York"),
        local_time="09:30",
        quiet=None,
        deadline_at=None,
        limit=2,
    )
    assert [(s.timezone, s.devices, s.without_zone) for s in shares] == [
        ("Europe/Warsaw", 5, 0),
        ("America/New_York", 10, 3),
    ]
    assert [s.first_send_at for s in shares] == [
        datetime(2026, 12, 6, 8, 30, tzinfo=UTC),
        datetime(2026, 12, 6, 14, 30, tzinfo=UTC),
    ]
    # Tokyo (00:30 UTC on the 7th) and Kolkata (04:00 UTC on the 7th) are left off, counted.
    assert (more_zones, more_devices) == (2, 14)


def test_a_zones_time_to_live_counts_from_its_local_instant() -> None:
    """A local-time campaign with a 4-hour time to live: every zone goes at 09:30 there,
    however far ahead, so none is past its deadline; quiet hours that hold a zone's 09:30
    past 13:30 there make that zone's share expire."""
    now = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
    counts: dict[str | None, int] = {"Asia/Tokyo": 4, "America/New_York": 3, "Europe/Warsaw": 2}
    shares, _, _ = zone_schedule(
        counts,
        now=now,
        default_zone=ZoneInfo("UTC"),
        local_time="09:30",
        quiet=None,
        deadline_at=None,
        ttl_seconds=4 * 3600,
    )
    assert [s.past_deadline for s in shares] == [False, False, False]
    held, _, _ = zone_schedule(
        counts,
        now=now,
        default_zone=ZoneInfo("UTC"),
        local_time="09:30",
        quiet=QuietHours(start=time(9, 0), end=time(14, 0)),
        deadline_at=None,
        ttl_seconds=4 * 3600,
    )
    assert all(s.after_quiet_hours and s.past_deadline for s in held)
