"""Timing rules at scale: local-time delivery and quiet hours, with real worker processes.

`wavecast bench timing` (`--devices` 1,000,000 over `--zones` 400 IANA zones, `--throttle`
1,000/s, `--workers` 2, sandbox provider). Devices are filled by `INSERT ... SELECT FROM
generate_series`, device i in zone i mod Z, so every zone holds the same number of devices.

Zones. `choose_zones` takes Z of the machine's `zoneinfo.available_timezones()` that name a
place (Area/Location: no `Etc/`, `US/` or bare aliases), without regard to the clock: first
the zones whose offset (on 1 January or 1 July 2026) is not a whole hour (half-hour and
45-minute zones) or lies at the date line (≥ +12 h or ≤ −10 h: both of its sides), taken in
turn from each of those four kinds, then the others, evenly spaced in name order.

1. Local time (campaign "local": everyone, one 100 % wave, `rollout.local_time`). The zones
   share their UTC offsets in groups (modulo 24 h, so Pacific/Kiritimati at +14 h and
   Pacific/Honolulu at −10 h are one group: the date line). `choose_local_time` takes the
   largest group and the first whole minute at least `--lead` seconds away, and sets
   `local_time` to that group's wall clock at that minute: every zone of the group reaches
   it at that instant, every other zone 15 minutes or more away from it (outside the run).
   - **rows scheduled per second**: the ledger rows the release inserted (each with its due
     time, `next_attempt_at`) over the time from the wave's `released_at` (the tick's
     decision) to the poll (every second) that saw the last of them. Target: the release
     schedules the whole audience. When it stops making progress for `--stall` seconds, the
     figure says how many it scheduled, and the benchmark puts the remaining devices in the
     ledger itself with one `INSERT ... SELECT` (due times from the same
     `app.timing.schedule.due_at`), so the figures below still see a full ledger; that fill
     is reported apart and is not the product's rate.
   - **rows scheduled at a wrong due time**: the release's rows whose `next_attempt_at` is
     not `due_at(released_at, their zone, local_time, quiet hours)`. Target 0.
   - **claim with nothing due**: before the instant, with the whole ledger queued and not
     due, one claim as the sender issues it and `has_claimable` as the tick issues it, timed
     (median of 3, rolled back) and their plans printed (auto_explain, ANALYZE, BUFFERS).
   - **instant → first send**: for each zone whose instant (`next_local_occurrence` after
     the release) falls between the release and the end of observation (`--observe`
     seconds after the instant), its first `sandbox_message.sent_at` minus that instant:
     p50 / p95 / max over those zones, nearest rank. Target: max ≤ 2 s; a zone without a
     send counts apart (target 0). Sends before their zone's instant: target 0.
2. Quiet hours (campaign "quiet", started once "local" is paused: a one-wave campaign
   without a local time, so its rows are due at the release and the sender's claim-time
   check, `outcomes.pre_send_outcomes`, defers those of devices in their quiet hours).
   `choose_quiet_window` takes the largest group again and an 11-hour window ending at the
   first whole minute at least `--quiet-lead` seconds away on that group's clock. The
   audience is `--quiet-share` % of the devices (`attributes.slot`: a device's number
   divided by the zone count, modulo 100, independent of its zone) of the zones whose window
   **ends** during the run and of up to 20 zones **inside** it all along, and every device of
   the zones whose window **starts** as the first one ends (11 h is the window, so that is
   the group 11 h behind) and of every zone **outside** it all along: sent from the start,
   they are a backlog that keeps the throttle busy past the window's end, so rows of the
   zones whose window starts then are still being claimed and sent around that instant.
   - **sends inside quiet hours**: every recorded send of both campaigns
     (`sandbox_message.sent_at`) read against its device's zone and its campaign's window
     (`in_quiet_hours`). Target 0. (The "local" campaign has the window from one hour after
     its local time to one hour before it, so a send far from the local time is inside.)
   - **busiest second after the window ends**: the most sends of the "quiet" campaign in any
     1 s window `[t, t + 1 s)` (sliding, `wavecast_tools.bench.timing.sliding_max`) among
     those sent from the window's end to `--observe` seconds after it. Target ≤ R + B: the
     throttle's `per_second` R plus its burst B, one batch of the paced rate
     (`throttle_math.batch_size_for_rate(paced(R))`: 4 % of 0.97 R, at most 500).
   - **window end → first send**: as for local time, for the zones whose window ends.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import statistics
import sys
import time
import uuid
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from typing import Any

from sqlalchemy import text

from app.audiences.service import audience_filter
from app.audiences.versions import version_key
from app.auth.principal import SYSTEM
from app.campaigns import commands
from app.campaigns import service as campaigns
from app.campaigns.schemas import CampaignCreate
from app.control.plane import Control, paced
from app.control.throttle_math import batch_size_for_rate
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger
from app.runtime import Runtime
from app.settings import Settings
from app.timing.schedule import QuietHours, due_at, next_local_occurrence, quiet_until
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, at_least, at_most, percentile, reported
from wavecast_tools.bench.scale import explaining
from wavecast_tools.bench.timing import sliding_max

DESCRIPTION = "local-time delivery and quiet hours over 400 time zones: scheduling, first sends"
SCENARIO = "timing"
FIRST_SEND_TARGET_SECONDS = 2.0
QUIET_WINDOW = timedelta(hours=11)
FILL_ROWS = 100_000
_DAY_MINUTES = 24 * 60
_PLACES = (
    "Africa/",
    "America/",
    "Antarctica/",
    "Arctic/",
    "Asia/",
    "Atlantic/",
    "Australia/",
    "Europe/",
    "Indian/",
    "Pacific/",
)
# Two reference instants, so a zone's summer and winter offsets both count.
_REFERENCES = (datetime(2026, 1, 1, 12, tzinfo=UTC), datetime(2026, 7, 1, 12, tzinfo=UTC))


# ------------------------------------------------------------------ zones (pure)


def is_place(name: str) -> bool:
    """A zone named after a place (Area/Location), not an alias such as `Etc/GMT+5`,
    `US/Eastern` or `EST5EDT`."""
    return name.startswith(_PLACES)


def _offset_minutes(zone: str, at: datetime) -> int:
    offset = at.astimezone(zoneinfo.ZoneInfo(zone)).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() // 60)


def zone_kinds(zone: str) -> set[str]:
    """Which of the kinds `choose_zones` puts first the zone belongs to: "half-hour",
    "45-minute" (an offset off the whole hour), "east" (≥ +12 h) and "west" (≤ −10 h) of the
    date line, on either reference date."""
    kinds: set[str] = set()
    for at in _REFERENCES:
        minutes = _offset_minutes(zone, at)
        if minutes % 60 == 30:
            kinds.add("half-hour")
        elif minutes % 60 in (15, 45):
            kinds.add("45-minute")
        if minutes >= 12 * 60:
            kinds.add("east")
        if minutes <= -10 * 60:
            kinds.add("west")
    return kinds


def _spread(items: Sequence[str], count: int) -> list[str]:
    """`count` of `items`, evenly spaced, in their order."""
    if count >= len(items):
        return list(items)
    return [items[(index * len(items)) // count] for index in range(count)]


def choose_zones(available: Iterable[str], count: int) -> list[str]:
    """`count` place zones, the same on every machine with the same zone database and at any
    hour: the half-hour, 45-minute and date-line zones first, a kind at a time in turn (so a
    small count still holds one of each), then the others evenly spaced in name order.
    Sorted by name."""
    places = sorted(name for name in set(available) if is_place(name))
    if count > len(places):
        raise ValueError(f"this machine knows {len(places)} place zones, fewer than {count}")
    kinds = {name: zone_kinds(name) for name in places}
    queues = [
        [name for name in places if kind in kinds[name]]
        for kind in ("half-hour", "45-minute", "east", "west")
    ]
    chosen: list[str] = []
    seen: set[str] = set()
    while len(chosen) < count and any(queues):
        for queue in queues:
            while queue and queue[0] in seen:
                queue.pop(0)
            if queue and len(chosen) < count:
                seen.add(queue[0])
                chosen.append(queue.pop(0))
    rest = [name for name in places if name not in seen]
    chosen += _spread(rest, count - len(chosen))
    return sorted(chosen)


def offset_groups(zones: Iterable[str], at: datetime) -> dict[int, list[str]]:
    """Zones by their UTC offset at `at`, in minutes modulo a day (+14 h and −10 h read the
    same wall clock, a date apart), each group in name order."""
    groups: dict[int, list[str]] = {}
    for zone in sorted(zones):
        groups.setdefault(_offset_minutes(zone, at) % _DAY_MINUTES, []).append(zone)
    return groups


def _largest_group(zones: Iterable[str], at: datetime) -> tuple[int, list[str]]:
    groups = offset_groups(zones, at)
    # Ties go to the smallest offset, so the choice never depends on dict order.
    offset = max(groups, key=lambda minutes: (len(groups[minutes]), -minutes))
    return offset, groups[offset]


def _next_minute(not_before: datetime) -> datetime:
    at = not_before.astimezone(UTC)
    minute = at.replace(second=0, microsecond=0)
    return minute if minute == at else minute + timedelta(minutes=1)


@dataclass(frozen=True)
class LocalTimePlan:
    local_time: str
    """The campaign's `rollout.local_time`, "HH:MM"."""
    instant: datetime
    """When the group's zones reach it (UTC)."""
    group: list[str]


def choose_local_time(zones: Sequence[str], not_before: datetime) -> LocalTimePlan:
    """The local time the largest offset group reaches at the first whole minute at or after
    `not_before`."""
    instant = _next_minute(not_before)
    offset, group = _largest_group(zones, instant)
    wall = instant + timedelta(minutes=offset)
    return LocalTimePlan(f"{wall:%H:%M}", instant, group)


def local_instants(zones: Iterable[str], local_time: str, after: datetime) -> dict[str, datetime]:
    """Each zone's next occurrence of `local_time` at or after `after`: when its devices are
    due (`app.timing.schedule`)."""
    local = clock.fromisoformat(local_time)
    return {z: next_local_occurrence(local, zoneinfo.ZoneInfo(z), after) for z in zones}


def _shift(local: str, minutes: int) -> str:
    start = datetime(2026, 1, 1, int(local[:2]), int(local[3:]), tzinfo=UTC)
    return f"{start + timedelta(minutes=minutes):%H:%M}"


def local_campaign_window(local_time: str) -> QuietHours:
    """The "local" campaign's quiet hours: everything but the two hours around its local
    time, so a send far from the local time would be a send inside them."""
    return QuietHours(
        clock.fromisoformat(_shift(local_time, 60)), clock.fromisoformat(_shift(local_time, -60))
    )


@dataclass(frozen=True)
class QuietPlan:
    window: QuietHours
    end: datetime
    """When the largest group's window ends (UTC)."""


def choose_quiet_window(zones: Sequence[str], not_before: datetime) -> QuietPlan:
    """An 11-hour window that ends, in the largest offset group, at the first whole minute
    at or after `not_before`."""
    end = _next_minute(not_before)
    offset, _ = _largest_group(zones, end)
    wall_end = f"{end + timedelta(minutes=offset):%H:%M}"
    wall_start = _shift(wall_end, -int(QUIET_WINDOW.total_seconds() // 60))
    window = QuietHours(clock.fromisoformat(wall_start), clock.fromisoformat(wall_end))
    return QuietPlan(window, end)


def in_quiet_hours(window: QuietHours, zone: str, sent_at: datetime) -> bool:
    """Whether a send recorded at `sent_at` reached a device of `zone` inside its quiet
    hours (`app.timing.schedule.quiet_until`: start inclusive, end exclusive)."""
    return quiet_until(window, zoneinfo.ZoneInfo(zone), sent_at) is not None


def classify(
    zones: Iterable[str], window: QuietHours, start: datetime, end: datetime
) -> dict[str, list[str]]:
    """Zones by what their window does between `start` and `end` (shorter than the window
    and than the time between two windows): "ends", "starts", "inside" all along,
    "outside" all along."""
    kinds: dict[str, list[str]] = {"ends": [], "starts": [], "inside": [], "outside": []}
    for zone in sorted(zones):
        first, last = in_quiet_hours(window, zone, start), in_quiet_hours(window, zone, end)
        kind = {
            (True, False): "ends",
            (False, True): "starts",
            (True, True): "inside",
            (False, False): "outside",
        }[(first, last)]
        kinds[kind].append(zone)
    return kinds


def window_ends(zones: Iterable[str], window: QuietHours, at: datetime) -> dict[str, datetime]:
    """When each zone's window that holds `at` ends."""
    ends = {}
    for zone in zones:
        end = quiet_until(window, zoneinfo.ZoneInfo(zone), at)
        if end is not None:
            ends[zone] = end
    return ends


@dataclass(frozen=True)
class FirstSends:
    delays: dict[str, float]
    """Seconds from each zone's instant to its first send."""
    unsent: list[str]
    """Zones whose instant fell in the run and that had no send."""


def first_sends(
    instants: Mapping[str, datetime],
    first: Mapping[str, datetime],
    since: datetime,
    until: datetime,
) -> FirstSends:
    """Instant → first send for the zones whose instant lies in `[since, until]`."""
    delays: dict[str, float] = {}
    unsent: list[str] = []
    for zone, instant in sorted(instants.items()):
        if not since <= instant <= until:
            continue
        if zone in first:
            delays[zone] = (first[zone] - instant).total_seconds()
        else:
            unsent.append(zone)
    return FirstSends(delays, unsent)


def busiest_second(times: Sequence[float]) -> tuple[int, float | None]:
    """The most instants in any window `[t, t + 1 s)` (`sliding_max`) and the first `t` that
    holds that many (None without instants)."""
    if not times:
        return 0, None
    count = sliding_max(times)
    ordered = sorted(times)
    for index, instant in enumerate(ordered):
        if bisect.bisect_left(ordered, instant + 1.0) - index == count:
            return count, instant
    raise AssertionError("sliding_max counted a window no instant starts")  # pragma: no cover


def burst_allowance(per_second: int) -> int:
    """The throttle's burst: one batch at the paced rate."""
    return batch_size_for_rate(paced(float(per_second)))


# ------------------------------------------------------------------ I/O

_FILL = """
    INSERT INTO device (id, token, platform, user_id, locale, timezone, app_version,
                        app_version_key, tags, attributes, apns_environment, is_test_device,
                        status, bucket, last_seen_at, created_at, updated_at)
    SELECT id, 'timing-' || md5(i::text) || md5('t' || i), platform, 'cust-' || i, 'en-GB',
           (CAST(:zones AS text[]))[1 + (i % CAST(:count AS bigint))::int], '6.0.0', :key,
           '[]'::jsonb, jsonb_build_object('slot', (i / CAST(:count AS bigint)) % 100),
           CASE WHEN platform = 'ios' THEN 'production' END, false, 'active',
           ('x' || left(encode(sha256(uuid_send(id)), 'hex'), 8))::bit(32)::bigint,
           now(), now(), now()
    FROM (
        SELECT i, gen_random_uuid() AS id,
               CASE WHEN i % 20 < 9 THEN 'ios' ELSE 'android' END AS platform
        FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS i
    ) AS generated
"""

# The benchmark's own completion of a stalled release: the devices the ledger lacks, due as
# the release would have made them (one due time per zone, computed in Python).
_COMPLETE = """
    INSERT INTO delivery (campaign_id, device_id, ledger_month, wave, status, attempts,
                          next_attempt_at, created_at, updated_at)
    SELECT CAST(:campaign AS uuid), d.id, c.ledger_month, 0, 'queued', 0, z.due, now(), now()
    FROM device d
    JOIN unnest(CAST(:zones AS text[]), CAST(:dues AS timestamptz[])) AS z(zone, due)
      ON z.zone = d.timezone
    JOIN campaign c ON c.id = CAST(:campaign AS uuid)
    ON CONFLICT DO NOTHING
"""


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


async def _fill(runtime: Runtime, zones: Sequence[str], devices: int) -> float:
    started = time.perf_counter()
    for first in range(0, devices, FILL_ROWS):
        last = min(devices, first + FILL_ROWS) - 1
        async with runtime.engine.begin() as conn:
            await conn.execute(
                text(_FILL),
                {
                    "zones": list(zones),
                    "count": len(zones),
                    "key": version_key("6.0.0"),
                    "first": first,
                    "last": last,
                },
            )
        log(f"filled {last + 1:,} devices")
    elapsed = time.perf_counter() - started
    async with runtime.engine.begin() as conn:
        await conn.execute(text("ANALYZE device"))
    return devices / elapsed


async def _start(runtime: Runtime, body: dict[str, Any]) -> uuid.UUID:
    create = CampaignCreate.model_validate(body)
    async with unit_of_work(runtime.sessionmaker) as session:
        campaign = await campaigns.create(session, runtime.settings, SYSTEM, create)
        campaign = await campaigns.start(
            session, runtime.settings, SYSTEM, campaign.id, override_reason=None, reason="bench"
        )
    await Control(runtime.redis).publish_campaign(campaign)
    return campaign.id


async def _pause(runtime: Runtime, campaign_id: uuid.UUID) -> None:
    async with unit_of_work(runtime.sessionmaker) as session:
        await commands.pause(
            session, Control(runtime.redis), SYSTEM, campaign_id, reason="bench: next phase"
        )


async def _scalar(runtime: Runtime, sql: str, **params: Any) -> Any:
    async with runtime.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def _in_ledger(runtime: Runtime, campaign_id: uuid.UUID) -> int:
    return int(
        await _scalar(
            runtime, "SELECT count(*) FROM delivery WHERE campaign_id = :id", id=campaign_id
        )
    )


async def _released_at(runtime: Runtime, campaign_id: uuid.UUID) -> datetime | None:
    value: datetime | None = await _scalar(
        runtime,
        "SELECT released_at FROM campaign_wave WHERE campaign_id = :id AND index = 0",
        id=campaign_id,
    )
    return value


@dataclass
class Release:
    released_at: datetime
    scheduled: int
    """Rows the product's release put in the ledger."""
    done_at: datetime
    """When the poll saw the last of them."""
    complete: bool
    last_id: int
    """The largest ledger id the release wrote (the benchmark's own rows come after)."""


async def _await_release(
    runtime: Runtime, campaign_id: uuid.UUID, target: int, *, stall: float, within: float
) -> Release:
    """Poll the ledger every second until it holds `target` rows of the campaign, or its
    count has not moved for `stall` seconds."""
    deadline = time.monotonic() + within
    released_at = None
    count, moved, done_at = 0, time.monotonic(), utcnow()
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        polled_at = utcnow()
        now = await _in_ledger(runtime, campaign_id)
        released_at = released_at or await _released_at(runtime, campaign_id)
        if now != count:
            count, moved, done_at = now, time.monotonic(), polled_at
            log(f"ledger: {count:,} of {target:,} rows")
        if count >= target or (count and time.monotonic() - moved > stall):
            break
    if released_at is None:
        raise RuntimeError("the wave was never released")
    last_id = int(
        await _scalar(
            runtime,
            "SELECT coalesce(max(id), 0) FROM delivery WHERE campaign_id = :id",
            id=campaign_id,
        )
    )
    return Release(released_at, count, done_at, count >= target, last_id)


async def _complete(
    runtime: Runtime, campaign_id: uuid.UUID, dues: Mapping[str, datetime]
) -> tuple[int, float]:
    started = time.perf_counter()
    async with runtime.engine.begin() as conn:
        result = await conn.execute(
            text(_COMPLETE),
            {"campaign": campaign_id, "zones": list(dues), "dues": list(dues.values())},
        )
        added = int(result.rowcount or 0)
    async with runtime.engine.begin() as conn:
        await conn.execute(text("ANALYZE delivery"))
    return added, time.perf_counter() - started


async def _wrong_dues(
    runtime: Runtime, campaign_id: uuid.UUID, dues: Mapping[str, datetime], last_id: int
) -> int:
    """The release's rows (id ≤ `last_id`) not due when their zone's devices should be."""
    async with runtime.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT v.timezone, l.next_attempt_at, count(*) FROM delivery l"
                    " JOIN device v ON v.id = l.device_id WHERE l.campaign_id = :id"
                    " AND l.id <= :last GROUP BY 1, 2"
                ),
                {"id": campaign_id, "last": last_id},
            )
        ).all()
    return sum(int(n) for zone, due, n in rows if dues.get(zone) != due)


async def _timed_claims(
    runtime: Runtime, campaign_id: uuid.UUID, batch: int, repeat: int = 3
) -> tuple[float, float, str]:
    """Median milliseconds of one claim (as the sender issues it: `batch` rows, the audience
    re-applied) and of `has_claimable`, each in a rolled-back transaction, and their
    plans from auto_explain."""
    claims: list[float] = []
    checks: list[float] = []
    async with runtime.engine.connect() as conn:
        for _ in range(repeat):
            transaction = await conn.begin()
            async with runtime.sessionmaker(bind=conn) as session:
                campaign = await campaigns.get(session, campaign_id)
                audience = audience_filter(campaign.audience_rules, now=utcnow())
                started = time.perf_counter()
                await ledger.claim(
                    session,
                    campaign_id=campaign_id,
                    limit=batch,
                    lease_token=uuid.uuid4(),
                    lease_until=utcnow(),
                    now=utcnow(),
                    audience=audience,
                )
                claims.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await ledger.has_claimable(session, campaign_id, utcnow())
                checks.append((time.perf_counter() - started) * 1000)
            await transaction.rollback()
        notices = await explaining(conn)
        transaction = await conn.begin()
        async with runtime.sessionmaker(bind=conn) as session:
            campaign = await campaigns.get(session, campaign_id)
            audience = audience_filter(campaign.audience_rules, now=utcnow())
            notices.clear()
            await ledger.claim(
                session,
                campaign_id=campaign_id,
                limit=batch,
                lease_token=uuid.uuid4(),
                lease_until=utcnow(),
                now=utcnow(),
                audience=audience,
            )
            await asyncio.sleep(0.05)  # the driver hands notices over on later loop passes
            claim_plan = [n for n in notices if "Update on delivery" in n]
            notices.clear()
            await ledger.has_claimable(session, campaign_id, utcnow())
        await transaction.rollback()
        # A read's plan is logged when its portal closes, at the latest with the transaction.
        await asyncio.sleep(0.05)
        check_plan = [n for n in notices if "delivery" in n]
        # The settings above stay with the connection: never hand it back to the pool.
        await conn.invalidate()
    plans = (
        f"claim of {batch} rows, nothing due:\n"
        + "\n".join(claim_plan)
        + "\n\nhas_claimable, nothing due:\n"
        + "\n".join(check_plan)
    )
    return statistics.median(claims), statistics.median(checks), plans


async def _sends(runtime: Runtime, campaign_id: uuid.UUID) -> list[tuple[str, datetime]]:
    async with runtime.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT v.timezone, s.sent_at FROM sandbox_message s"
                    " JOIN device v ON v.id = s.device_id WHERE s.campaign_id = :id"
                ),
                {"id": campaign_id},
            )
        ).all()
    return [(str(zone), sent_at) for zone, sent_at in rows]


def _first_by_zone(sends: Iterable[tuple[str, datetime]]) -> dict[str, datetime]:
    first: dict[str, datetime] = {}
    for zone, sent_at in sends:
        if zone not in first or sent_at < first[zone]:
            first[zone] = sent_at
    return first


async def _sleep_until(instant: datetime) -> None:
    left = (instant - utcnow()).total_seconds()
    if left > 0:
        await asyncio.sleep(left)


def _content() -> dict[str, Any]:
    # Two days to live: a row deferred to the end of its quiet hours, or due at tomorrow's
    # local time, waits for it instead of expiring.
    return {
        "title": "Your statement is ready",
        "body": "Log in to see it.",
        "ttl_seconds": 2 * 24 * 3600,
    }


def _window_body(window: QuietHours) -> dict[str, str]:
    return {"start": f"{window.start:%H:%M}", "end": f"{window.end:%H:%M}"}


async def run(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    zones = choose_zones(zoneinfo.available_timezones(), args.zones)
    runtime = await Runtime.start(settings)
    work = stack.workdir(SCENARIO)
    figures: list[Figure] = []
    try:
        await stack.empty_stores(runtime)
        async with runtime.engine.begin() as conn:
            await conn.execute(text("TRUNCATE sandbox_message"))
        fill_rate = await _fill(runtime, zones, args.devices)
        figures.append(
            reported(
                SCENARIO, "device fill (generate_series, not an import)", fill_rate, "devices/s"
            )
        )
        with stack.workers(
            settings,
            args.workers,
            work,
            WAVECAST_PROVIDER="sandbox",
            WAVECAST_QUIET_HOURS="off",
            WAVECAST_FREQUENCY_CAP="off",
        ):
            await stack.workers_alive(runtime.redis, args.workers)
            figures += await _local_phase(runtime, zones, args)
            figures += await _quiet_phase(runtime, zones, args)
    finally:
        await runtime.close()
    log(f"worker logs: {work}")
    return figures


async def _local_phase(
    runtime: Runtime, zones: Sequence[str], args: argparse.Namespace
) -> list[Figure]:
    plan = choose_local_time(zones, utcnow() + timedelta(seconds=args.lead))
    window = local_campaign_window(plan.local_time)
    log(
        f"local time {plan.local_time}: {len(plan.group)} zones reach it at "
        f"{plan.instant:%H:%M:%S} UTC ({plan.group[0]} ... {plan.group[-1]})"
    )
    campaign_id = await _start(
        runtime,
        {
            "name": "timing bench: local time",
            "kind": "live",
            "content": _content(),
            "audience": {"rules": {"everyone": True}},
            "rollout": {"waves": [{"percent": 100}], "local_time": plan.local_time},
            "throttle": {"per_second": args.throttle},
            "quiet_hours": _window_body(window),
        },
    )
    release = await _await_release(
        runtime, campaign_id, args.devices, stall=args.stall, within=args.lead + 600
    )
    local = clock.fromisoformat(plan.local_time)
    dues = {
        z: due_at(
            released_at=release.released_at,
            zone=zoneinfo.ZoneInfo(z),
            local_time=local,
            quiet=window,
        )
        for z in zones
    }
    seconds = max(1e-3, (release.done_at - release.released_at).total_seconds())
    figures = [
        at_least(
            SCENARIO,
            f"rows scheduled by the release (of {args.devices:,})",
            release.scheduled,
            "rows",
            args.devices,
        ),
        reported(
            SCENARIO,
            "rows scheduled per second (release, with due times)",
            release.scheduled / seconds,
            "rows/s",
        ),
    ]
    if not release.complete:
        log(f"the release stalled at {release.scheduled:,} rows; the benchmark fills the rest")
        added, took = await _complete(runtime, campaign_id, dues)
        figures.append(
            reported(
                SCENARIO,
                f"benchmark's own SQL fill of the stalled release ({added:,} rows)",
                added / max(1e-3, took),
                "rows/s",
            )
        )
    wrong = await _wrong_dues(runtime, campaign_id, dues, release.last_id)
    figures.append(at_most(SCENARIO, "release rows at a wrong due time", wrong, "rows", 0))
    if utcnow() < plan.instant - timedelta(seconds=5):
        claim_ms, check_ms, plans = await _timed_claims(
            runtime, campaign_id, burst_allowance(args.throttle)
        )
        print(plans)
        queued = await _in_ledger(runtime, campaign_id)
        figures += [
            reported(SCENARIO, f"claim (one batch), {queued:,} queued, none due", claim_ms, "ms"),
            reported(SCENARIO, f"has_claimable, {queued:,} queued, none due", check_ms, "ms"),
        ]
    else:
        log("the instant came before the ledger was ready: no claim timing with nothing due")
    until = plan.instant + timedelta(seconds=args.observe)
    log(f"waiting for {plan.instant:%H:%M:%S} and {args.observe:.0f} s after it")
    await _sleep_until(until)
    await _pause(runtime, campaign_id)
    sends = await _sends(runtime, campaign_id)
    instants = local_instants(zones, plan.local_time, release.released_at)
    result = first_sends(instants, _first_by_zone(sends), release.released_at, until)
    early = sum(1 for zone, sent_at in sends if sent_at < instants[zone])
    inside = sum(1 for zone, sent_at in sends if in_quiet_hours(window, zone, sent_at))
    delays = list(result.delays.values())
    sent_after = sum(1 for _, sent_at in sends if sent_at >= plan.instant)
    figures += [
        reported(
            SCENARIO,
            f"local campaign: sends per second in the {args.observe:.0f} s after the instant",
            sent_after / args.observe,
            "sends/s",
        ),
        reported(
            SCENARIO, "zones whose local time fell in the run", len(instants_in(result)), "zones"
        ),
        at_most(SCENARIO, "zones in the run without a send", len(result.unsent), "zones", 0),
        at_most(SCENARIO, "sends before their zone's local time", early, "sends", 0),
        at_most(
            SCENARIO,
            f"local campaign: sends inside quiet hours (of {len(sends):,})",
            inside,
            "sends",
            0,
        ),
    ]
    if delays:
        figures += [
            reported(
                SCENARIO, "local time -> first send, p50 over zones", percentile(delays, 50), "s"
            ),
            reported(
                SCENARIO, "local time -> first send, p95 over zones", percentile(delays, 95), "s"
            ),
            at_most(
                SCENARIO,
                "local time -> first send, max over zones",
                max(delays),
                "s",
                FIRST_SEND_TARGET_SECONDS,
            ),
        ]
    return figures


def instants_in(result: FirstSends) -> list[str]:
    return [*result.delays, *result.unsent]


async def _quiet_phase(
    runtime: Runtime, zones: Sequence[str], args: argparse.Namespace
) -> list[Figure]:
    start = utcnow()
    plan = choose_quiet_window(zones, start + timedelta(seconds=args.quiet_lead))
    until = plan.end + timedelta(seconds=args.observe)
    kinds = classify(zones, plan.window, start, until)
    chosen = {
        "ends": kinds["ends"],
        "starts": kinds["starts"],
        "inside": _spread(kinds["inside"], 20),
        "outside": kinds["outside"],
    }
    log(
        f"quiet hours {plan.window}, ending at {plan.end:%H:%M:%S} UTC for "
        + ", ".join(f"{len(v)} zones {k}" for k, v in chosen.items())
    )
    # Every device of the zones that can be sent at the start (the backlog that keeps the
    # throttle busy when the window ends); a share of the others, which wait.
    waiting = sorted([*chosen["ends"], *chosen["inside"]])
    backlog = sorted([*chosen["starts"], *chosen["outside"]])
    share = int(args.quiet_share)
    campaign_id = await _start(
        runtime,
        {
            "name": "timing bench: quiet hours",
            "kind": "live",
            "content": _content(),
            "audience": {
                "rules": {
                    "any": [
                        {
                            "all": [
                                {"field": "timezone", "op": "in", "value": waiting},
                                {"field": "attributes.slot", "op": "lt", "value": share},
                            ]
                        },
                        {"field": "timezone", "op": "in", "value": backlog},
                    ]
                }
            },
            "rollout": {"waves": [{"percent": 100}]},
            "throttle": {"per_second": args.throttle},
            "quiet_hours": _window_body(plan.window),
        },
    )
    log(f"waiting for {plan.end:%H:%M:%S} and {args.observe:.0f} s after it")
    await _sleep_until(until)
    await _pause(runtime, campaign_id)
    sends = await _sends(runtime, campaign_id)
    inside = [zone for zone, sent_at in sends if in_quiet_hours(plan.window, zone, sent_at)]
    starting = set(chosen["starts"])
    ends = window_ends(chosen["ends"], plan.window, start)
    result = first_sends(ends, _first_by_zone(sends), start, until)
    after = [s.timestamp() for _, s in sends if plan.end <= s < until]
    busiest, busiest_at = busiest_second(after)
    allowance = burst_allowance(args.throttle)
    figures = [
        reported(SCENARIO, "quiet campaign: sends recorded", len(sends), "sends"),
        at_most(
            SCENARIO,
            f"quiet campaign: sends inside quiet hours (of {len(sends):,})",
            len(inside),
            "sends",
            0,
        ),
        reported(
            SCENARIO,
            "... of them to zones whose window started during the run",
            sum(1 for zone in inside if zone in starting),
            "sends",
        ),
        at_most(
            SCENARIO,
            f"busiest 1 s after the window ends (R {args.throttle:,} + burst {allowance})",
            busiest,
            "sends",
            args.throttle + allowance,
        ),
        reported(
            SCENARIO,
            "... that second starts this long after the window's end",
            busiest_at - plan.end.timestamp() if busiest_at is not None else 0.0,
            "s",
        ),
        at_most(
            SCENARIO, "zones whose window ended without a send", len(result.unsent), "zones", 0
        ),
    ]
    if result.delays:
        delays = list(result.delays.values())
        figures += [
            reported(
                SCENARIO, "window end -> first send, p50 over zones", percentile(delays, 50), "s"
            ),
            reported(SCENARIO, "window end -> first send, max over zones", max(delays), "s"),
        ]
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=1_000_000, help="audience size")
    parser.add_argument("--zones", type=int, default=400, help="IANA zones the devices live in")
    parser.add_argument("--throttle", type=int, default=1_000, help="per_second of both campaigns")
    parser.add_argument("--workers", type=int, default=2, help="wavecast worker processes")
    parser.add_argument(
        "--lead",
        type=float,
        default=None,
        help="seconds from the start to the local time (default 45 + devices / 8,000)",
    )
    parser.add_argument(
        "--quiet-lead", type=float, default=45, help="seconds from its start to the window's end"
    )
    parser.add_argument(
        "--quiet-share", type=int, default=10, help="percent of each zone's devices in it"
    )
    parser.add_argument(
        "--observe", type=float, default=30, help="seconds watched after each instant"
    )
    parser.add_argument(
        "--stall", type=float, default=20, help="seconds without progress that end a release"
    )


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    if args.lead is None:
        args.lead = 45 + args.devices / 8_000
    return asyncio.run(run(settings, args))
